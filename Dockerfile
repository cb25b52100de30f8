# One image for the whole lab: the event service (default command) and the ping swarm
# (`python -m ping_client`). Build: `docker build -t ws-leak-lab .`
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# iproute2 gives `ss -tnm` inside the container: the service's Recv-Q is only visible from
# the container's own network namespace.
RUN apt-get update \
    && apt-get install -y --no-install-recommends iproute2 \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first, from pyproject.toml alone, so a code change reuses this layer.
COPY pyproject.toml /src/
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the packages, installed without touching the dependencies again: the service and the
# swarm, the kernel readers below them, and the lab above them.
COPY event_service /src/event_service
COPY ping_client /src/ping_client
COPY sockscope /src/sockscope
COPY leaklab /src/leaklab
RUN pip install --no-deps /src \
    && rm -rf /src

# A numeric user, so that runtimes can verify it is not root without reading /etc/passwd.
RUN groupadd --gid 10001 lab \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin lab
USER 10001:10001
WORKDIR /home/lab

# The service binds to all interfaces inside the container; compose publishes it on loopback.
ENV HOST=0.0.0.0 \
    PORT=8000
EXPOSE 8000

# Shell form on purpose: the shell expands ${PORT:-8000} when the check runs. No proxy: Docker
# may pass the client's *_PROXY variables into the container.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD python -c "import sys, urllib.request as u; u.build_opener(u.ProxyHandler({})).open(sys.argv[1], timeout=3)" "http://127.0.0.1:${PORT:-8000}/healthz"

CMD ["python", "-m", "event_service"]
