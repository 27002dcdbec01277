'use strict';
// What the rig's client and simulator share about their sockets.

// No Nagle delay in what the rig measures, and the PDUs written in one turn of the event loop go out in
// one write (node-smpp writes each PDU on its own).
function batchWrites(socket) {
	socket.setNoDelay(true);
	const write = socket.write.bind(socket);
	let corked = false;
	socket.write = (...args) => {
		if (!corked) {
			corked = true;
			socket.cork();
			process.nextTick(() => {
				corked = false;
				socket.uncork();
			});
		}
		return write(...args);
	};
}

module.exports = {batchWrites};
