// SMPP load client on node-smpp for bench/rig.py: binds transceivers, submits with registered_delivery=1,
// closed loop (window N outstanding per bind) or open loop (--rate R: message i is due at i/R s and
// its latencies count from then, so a full window shows as latency, not as a lower offered rate).
//   node client.js --host H --port P --system-id S --password W [--binds 1] [--window 100] [--count 20000]
//                  [--rate 0] [--idle-timeout 30] [--time-limit 0]
// --time-limit S: stop submitting after S seconds (the figures then cover what was submitted).
// Prints {"bound": true} on stdout once every bind is up, waits for a line on stdin, runs, prints one JSON
// line of figures (times in ms from the first submit) and exits.
'use strict';
const smpp = require('smpp');
const {batchWrites} = require('./net');
const {performance} = require('perf_hooks');

function opts(argv) {
	const o = {
		host: '127.0.0.1', port: 2775, systemId: 'loadgen', password: 'secret', binds: 1, window: 100,
		count: 20000, rate: 0, idleTimeout: 30, timeLimit: 0, source: 'RIGLOAD', dest: '447700900123',
		text: 'Benchmark message 0123456789',
	};
	for (let i = 2; i < argv.length; i += 2) {
		const k = argv[i].replace(/^--/, '').replace(/-(\w)/g, (_, c) => c.toUpperCase());
		o[k] = typeof o[k] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
	}
	return o;
}

const o = opts(process.argv);
const now = () => performance.now();
const norm = (id) => String(id).toLowerCase().replace(/^0+(?=.)/, '');

const sessions = [];
const inflight = [];
let t0 = 0;
let submitted = 0; // submit_sm written
let due = 0; // open loop: messages whose time has come (sent or waiting for window room)
let accepted = 0;
let rejected = 0;
let receipts = 0;
let receiptsUnknown = 0;
let receiptsDuplicate = 0;
let lastResp = 0;
let lastReceipt = 0;
let lastProgress = 0;
let finished = false;
let timeLimited = false;
const respLat = [];
const rcptLat = [];
const byId = new Map(); // message id -> intended submit time, until its receipt
const early = new Map(); // receipts that beat their submit_sm_resp: id -> arrival time
const seen = new Set();
const errors = {};

function submit(b, intended) {
	submitted += 1;
	inflight[b] += 1;
	sessions[b].submit_sm({
		source_addr_ton: 5, source_addr_npi: 0, source_addr: o.source,
		dest_addr_ton: 1, dest_addr_npi: 1, destination_addr: o.dest,
		registered_delivery: 1, short_message: o.text,
	}, (pdu) => onResp(b, intended, pdu));
}

function onResp(b, intended, pdu) {
	const t = now();
	inflight[b] -= 1;
	lastResp = lastProgress = t;
	respLat.push(t - intended);
	if (pdu.command_status === 0) {
		accepted += 1;
		const id = norm(pdu.message_id);
		if (early.has(id)) {
			rcptLat.push(early.get(id) - intended);
			early.delete(id);
			receipts += 1;
			seen.add(id);
		} else {
			byId.set(id, intended);
		}
	} else {
		rejected += 1;
		const k = '0x' + pdu.command_status.toString(16).padStart(8, '0');
		errors[k] = (errors[k] || 0) + 1;
	}
	pump(b);
	check();
}

function onDeliver(session, pdu) {
	session.send(pdu.response());
	if (!(pdu.esm_class & 0x04)) return;
	const t = now();
	lastProgress = t;
	let id = pdu.receipted_message_id;
	if (!id) {
		const sm = pdu.short_message && pdu.short_message.message;
		const m = /id:(\S+)/i.exec(typeof sm === 'string' ? sm : String(sm || ''));
		id = m ? m[1] : '';
	}
	id = norm(id);
	if (byId.has(id)) {
		rcptLat.push(t - byId.get(id));
		byId.delete(id);
		seen.add(id);
		receipts += 1;
		lastReceipt = t;
	} else if (seen.has(id)) {
		receiptsDuplicate += 1;
	} else if (id) {
		early.set(id, t);
		lastReceipt = t;
	} else {
		receiptsUnknown += 1;
	}
	check();
}

// closed loop: keep the window full; open loop: send what is due while the window has room
function pump(b) {
	if (o.rate > 0) {
		drainDue();
		return;
	}
	while (inflight[b] < o.window && submitted < o.count) submit(b, now());
}

let rr = 0;
function drainDue() {
	while (submitted < Math.min(due, o.count)) {
		let b = -1;
		for (let k = 0; k < sessions.length; k++) {
			const c = (rr + k) % sessions.length;
			if (inflight[c] < o.window) {
				b = c;
				break;
			}
		}
		if (b < 0) return;
		rr = (b + 1) % sessions.length;
		submit(b, t0 + (submitted * 1000) / o.rate);
	}
}

function tick() {
	if (finished) return;
	due = Math.min(o.count, Math.floor(((now() - t0) * o.rate) / 1000) + 1);
	drainDue();
	if (due < o.count) setTimeout(tick, 1);
}

function pct(arr, p) {
	if (!arr.length) return null;
	const s = Float64Array.from(arr).sort();
	return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

function check() {
	if (finished || submitted < o.count || accepted + rejected < o.count) return;
	if (receipts + receiptsUnknown < accepted) return;
	finish();
}

function finish() {
	if (finished) return;
	finished = true;
	const span = (t) => (t ? t - t0 : null);
	const out = {
		count: o.count, time_limited: timeLimited, binds: o.binds, window: o.window, rate: o.rate, submitted, accepted, rejected,
		errors, receipts, receipts_missing: accepted - receipts, receipts_unknown: receiptsUnknown + early.size,
		receipts_duplicate: receiptsDuplicate,
		last_resp_ms: span(lastResp), last_receipt_ms: span(lastReceipt),
		submit_per_s: lastResp ? (accepted + rejected) / ((lastResp - t0) / 1000) : null,
		msgs_per_s: lastReceipt ? receipts / ((lastReceipt - t0) / 1000) : null,
		resp_p50_ms: pct(respLat, 50), resp_p99_ms: pct(respLat, 99),
		receipt_p50_ms: pct(rcptLat, 50), receipt_p99_ms: pct(rcptLat, 99),
	};
	process.stdout.write(JSON.stringify(out) + '\n', () => {
		for (const s of sessions) s.unbind(() => s.close());
		setTimeout(() => process.exit(0), 500);
	});
}

function watchdog() {
	if (finished) return;
	if (o.timeLimit > 0 && submitted < o.count && now() - t0 > o.timeLimit * 1000) {
		o.count = submitted;
		timeLimited = true;
		check();
	}
	if (now() - lastProgress > o.idleTimeout * 1000) {
		finish();
		return;
	}
	setTimeout(watchdog, 200);
}

function start() {
	t0 = lastProgress = now();
	if (o.rate > 0) tick();
	else for (let b = 0; b < sessions.length; b++) pump(b);
	watchdog();
}

let bound = 0;
for (let b = 0; b < o.binds; b++) {
	inflight.push(0);
	const s = smpp.connect({url: `smpp://${o.host}:${o.port}`, auto_enquire_link_period: 30000});
	sessions.push(s);
	batchWrites(s.socket);
	s.on('deliver_sm', (pdu) => onDeliver(s, pdu));
	s.on('enquire_link', (pdu) => s.send(pdu.response()));
	s.on('error', (e) => {
		if (!finished) {
			console.error(`bind ${b}: ${e.message}`);
			process.exit(2);
		}
	});
	s.bind_transceiver({system_id: o.systemId, password: o.password}, (pdu) => {
		if (pdu.command_status !== 0) {
			console.error(`bind ${b} refused: 0x${pdu.command_status.toString(16)}`);
			process.exit(2);
		}
		bound += 1;
		if (bound === o.binds) {
			process.stdout.write(JSON.stringify({bound: true}) + '\n');
			let started = false;
			process.stdin.on('data', () => {
				if (!started) {
					started = true;
					start();
				}
			});
		}
	});
}
