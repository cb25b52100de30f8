#!/usr/bin/env bash
# Make sure the local RabbitMQ broker answers on 127.0.0.1:5672, starting it if needed.
set -euo pipefail
HOST=127.0.0.1 PORT=5672 TIMEOUT_S=${RABBITMQ_WAIT_S:-90}

answers() {
    # An AMQP broker answers a wrong protocol header with its own "AMQP" header.
    python3 - "$HOST" "$PORT" <<'PY'
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as sock:
        sock.sendall(b"HTTP/1.0\r\n\r\n")
        sys.exit(0 if sock.recv(8).startswith(b"AMQP") else 1)
except OSError:
    sys.exit(1)
PY
}

if answers; then exit 0; fi
if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "rabbitmq: not answering on $HOST:$PORT, starting it (rabbitmq-server -detached)"
    rabbitmq-server -detached || true
else
    echo "rabbitmq: not answering on $HOST:$PORT and rabbitmq-server is not installed" >&2
    exit 1
fi
for _ in $(seq 1 "$TIMEOUT_S"); do
    if answers; then echo "rabbitmq: up"; exit 0; fi
    sleep 1
done
echo "rabbitmq: still not answering on $HOST:$PORT after ${TIMEOUT_S}s" >&2
exit 1
