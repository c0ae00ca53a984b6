"""Redis Cluster: the broker's sharded pub/sub (``SSUBSCRIBE``/``SPUBLISH``) carries events
between gunicorn workers, and the stream limit's leases live in the cluster.

The test starts a 3-node cluster of its own (no replicas) on free loopback ports, in
temporary folders; the machine's Redis is never touched. Log reconciliation is slowed to a
minute: events that cross workers in time crossed through the cluster.
"""

import shutil
import socket
import subprocess

import pytest
import redis

from tests.conftest import fresh_database_url, missing_service
from tests.live import Api, LiveServer, free_port
from tests.test_fanout import open_concurrently
from tests.test_multiworker import wait_for

LIMIT = 3


class PrivateCluster:
    """Three ``redis-server --cluster-enabled yes`` joined by ``redis-cli --cluster create``."""

    def __init__(self, tmp_path, nodes=3):
        self.ports = [cluster_port() for _ in range(nodes)]
        self.tmp_path = tmp_path
        self.processes = []
        self.url = f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self):
        for port in self.ports:
            folder = self.tmp_path / f"node-{port}"
            folder.mkdir()
            args = ["--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes"]
            args += ["--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no"]
            self.processes.append(
                subprocess.Popen(
                    [shutil.which("redis-server"), *args, "--dir", str(folder)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.ports:
            client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2)
            assert wait_for(lambda client=client: _answers(client), timeout=5)
            client.close()
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        subprocess.run(
            [shutil.which("redis-cli"), "--cluster", "create", *nodes]
            + ["--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        client = redis.RedisCluster(host="127.0.0.1", port=self.ports[0])
        assert wait_for(lambda: client.cluster_info()["cluster_state"] == "ok", timeout=10)
        self.client = client
        return self

    def stop(self):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(5)


def cluster_port():
    """A free port whose cluster bus port (10000 above) is free too."""
    while True:
        port = free_port()
        if port + 10000 < 65536:
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port


def _answers(client):
    try:
        return client.ping()
    except redis.RedisError:
        return False


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        missing_service("the Redis Cluster test needs redis-server and redis-cli")
    started = PrivateCluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield started.start()
    finally:
        started.stop()


@pytest.fixture(scope="module")
def server(cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server")
    live = LiveServer(
        tmp,
        fresh_database_url("postgres", tmp),
        workers=2,
        redis_url=cluster.url,
        redis_cluster=1,
        reconcile_seconds=60,
        max_streams_per_account=LIMIT,
    ).start()
    yield live
    live.stop()


def test_events_cross_gunicorn_workers_through_the_clusters_sharded_pub_sub(cluster, server):
    api = Api(server.base)
    tenants = [api.new_tenant() for _ in range(6)]
    channels = [f"qrevents:events:{{{t.account_id}}}" for t in tenants]
    assert len({cluster.client.get_node_from_key(c).name for c in channels}) >= 2
    streams = []  # (tenant index, stream), round-robin, until both workers hold some
    try:
        while len({e["pid"] for e in server.json_log() if e["event"] == "stream_open"}) < 2:
            assert len(streams) < 60, "one worker took every stream"
            index = len(streams) % len(tenants)
            streams.append((index, api.stream(tenants[index])))
            assert streams[-1][1].next().event == "connection"
        created = [api.create_qr(tenant)["qrId"] for tenant in tenants]
        for index, stream in streams:
            assert [e.id for e in stream.take(1, timeout=3)] == [f"qr_created_{created[index]}"]
            assert stream.quiet_for(0.2) == []
        node = cluster.client.get_node_from_key(channels[0])
        shard = redis.Redis(host=node.host, port=node.port)
        assert shard.execute_command("PUBSUB", "SHARDNUMSUB", channels[0])[1] >= 1
        shard.close()
    finally:
        for _, stream in streams:
            stream.close()
        api.session.close()


def test_the_stream_limit_holds_across_workers_on_a_cluster(server):
    api = Api(server.base)
    tenant = api.new_tenant()
    results = open_concurrently([api, api], tenant, 10)
    try:
        admitted = [first for _, first in results if first.event == "connection"]
    finally:
        for stream, _ in results:
            stream.close()
        api.session.close()
    assert len(admitted) == LIMIT
