// SMSC simulator on node-smpp for bench/rig.py: accepts any bind, answers every submit_sm at once with a
// hex message id, then sends a DELIVRD receipt (standard receipt text, plus the receipted_message_id and
// message_state TLVs) to the same system id, on the session itself when it can receive, else on a receiver
// bind of that system id.
//   node smsc.js --host 127.0.0.1 --port 0 --port-file PATH
// On SIGINT/SIGTERM it prints one JSON line of counts and exits.
'use strict';
const fs = require('fs');
const smpp = require('smpp');
const {batchWrites} = require('./net');

function opts(argv) {
	const o = {host: '127.0.0.1', port: 0, portFile: null};
	for (let i = 2; i < argv.length; i += 2) {
		const k = argv[i].replace(/^--/, '').replace(/-(\w)/g, (_, c) => c.toUpperCase());
		o[k] = argv[i + 1];
	}
	o.port = Number(o.port);
	return o;
}

const o = opts(process.argv);
const stats = {binds: 0, submit_sm: 0, receipts_sent: 0, deliver_sm_resp: 0, deliver_sm_resp_errors: 0};
const receivers = new Map(); // system_id -> [sessions that can receive]
let nextId = 0;
const idBase = (Date.now() % 0x1000000) * 0x1000000; // ids differ from run to run

function stamp(d) {
	const p = (n) => String(n).padStart(2, '0');
	return p(d.getUTCFullYear() % 100) + p(d.getUTCMonth() + 1) + p(d.getUTCDate()) + p(d.getUTCHours()) +
		p(d.getUTCMinutes());
}

function receiptText(id, text) {
	const t = stamp(new Date());
	return `id:${id} sub:001 dlvrd:001 submit date:${t} done date:${t} stat:DELIVRD err:000 text:` +
		text.slice(0, 20);
}

function onDeliverResp(pdu) {
	stats.deliver_sm_resp += 1;
	if (pdu.command_status !== 0) stats.deliver_sm_resp_errors += 1;
}

const server = smpp.createServer((session) => {
	batchWrites(session.socket);
	let systemId = null;
	let canReceive = false;
	const bind = (kind) => (pdu) => {
		systemId = pdu.system_id;
		canReceive = kind !== 'bind_transmitter';
		if (canReceive) {
			if (!receivers.has(systemId)) receivers.set(systemId, []);
			receivers.get(systemId).push(session);
		}
		stats.binds += 1;
		session.send(pdu.response({system_id: 'rigsim'}));
	};
	for (const kind of ['bind_transceiver', 'bind_transmitter', 'bind_receiver']) session.on(kind, bind(kind));
	session.on('enquire_link', (pdu) => session.send(pdu.response()));
	session.on('unbind', (pdu) => {
		session.send(pdu.response());
		session.close();
	});
	session.on('submit_sm', (pdu) => {
		stats.submit_sm += 1;
		nextId += 1;
		const id = (idBase + nextId).toString(16);
		session.send(pdu.response({message_id: id}));
		if (!(pdu.registered_delivery & 0x01)) return;
		let target = canReceive ? session : null;
		if (!target) {
			const list = receivers.get(systemId) || [];
			target = list[nextId % Math.max(list.length, 1)] || null;
		}
		if (!target) return;
		const sm = pdu.short_message && pdu.short_message.message !== undefined ? pdu.short_message.message : '';
		target.deliver_sm({
			source_addr_ton: pdu.dest_addr_ton,
			source_addr_npi: pdu.dest_addr_npi,
			source_addr: pdu.destination_addr,
			dest_addr_ton: pdu.source_addr_ton,
			dest_addr_npi: pdu.source_addr_npi,
			destination_addr: pdu.source_addr,
			esm_class: 0x04,
			short_message: receiptText(id, typeof sm === 'string' ? sm : ''),
			receipted_message_id: id,
			message_state: 2,
		}, onDeliverResp);
		stats.receipts_sent += 1;
	});
	session.on('close', () => {
		if (systemId && receivers.has(systemId)) {
			receivers.set(systemId, receivers.get(systemId).filter((s) => s !== session));
		}
	});
	session.on('error', () => {});
});

server.listen(o.port, o.host, () => {
	const port = server.address().port;
	if (o.portFile) {
		fs.writeFileSync(o.portFile + '.tmp', String(port));
		fs.renameSync(o.portFile + '.tmp', o.portFile);
	} else {
		console.error(`listening on ${o.host}:${port}`);
	}
});

function finish() {
	process.stdout.write(JSON.stringify(stats) + '\n', () => process.exit(0));
}
process.on('SIGINT', finish);
process.on('SIGTERM', finish);
