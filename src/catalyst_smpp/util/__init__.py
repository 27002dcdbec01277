"""Small, I/O-free building blocks shared by the server, the client and the gateway."""
