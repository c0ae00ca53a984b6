"""The two server hosts as network namespaces, each linked to this machine by a veth pair.

Addresses come from 10.231.0.0/16, routed only between this machine and its namespaces
(nothing is forwarded: no route leaves the machine). The data services listen on the first
host's link address, which the second host reaches through its own gateway (the machine
delivers locally whatever address of its own a packet is for).
"""

import subprocess
from dataclasses import dataclass

SERVICE_ADDRESS = "10.231.1.1"  # PostgreSQL, Redis and the bank, as the hosts see them


def run(*command, check=True):
    """A command of ``ip``/``iptables``; its failure says what was tried."""
    result = subprocess.run(command, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")
    return result


@dataclass
class Host:
    """One server host: a namespace, its veth pair and its address."""

    name: str  # "a" or "b"
    index: int

    @property
    def namespace(self):
        return f"qrchaos-{self.name}"

    @property
    def outer_link(self):
        return f"qrchaos{self.name}0"

    @property
    def gateway(self):
        return f"10.231.{self.index}.1"

    @property
    def address(self):
        return f"10.231.{self.index}.2"

    def exec_prefix(self):
        """The command prefix that runs a program inside this host."""
        return ["ip", "netns", "exec", self.namespace]

    def create(self):
        self.destroy()
        run("ip", "netns", "add", self.namespace)
        run("ip", "link", "add", self.outer_link, "type", "veth", "peer", "name", "eth0",
            "netns", self.namespace)  # fmt: skip
        run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.outer_link)
        run("ip", "link", "set", self.outer_link, "up")
        inside = self.exec_prefix()
        run(*inside, "ip", "addr", "add", f"{self.address}/24", "dev", "eth0")
        run(*inside, "ip", "link", "set", "eth0", "up")
        run(*inside, "ip", "link", "set", "lo", "up")
        run(*inside, "ip", "route", "add", "default", "via", self.gateway)

    def destroy(self):
        run("ip", "link", "del", self.outer_link, check=False)
        run("ip", "netns", "del", self.namespace, check=False)

    def _partition_rules(self, action, port):
        inside = self.exec_prefix()
        run(*inside, "iptables", action, "OUTPUT", "-p", "tcp", "-d", SERVICE_ADDRESS,
            "--dport", str(port), "-j", "DROP")  # fmt: skip
        run(*inside, "iptables", action, "INPUT", "-p", "tcp", "-s", SERVICE_ADDRESS,
            "--sport", str(port), "-j", "DROP")  # fmt: skip

    def cut_from(self, port):
        """Drop every packet between this host and ``port`` both ways, silently (no RST,
        no ICMP): its open connections hang instead of closing."""
        self._partition_rules("-A", port)

    def heal_from(self, port):
        self._partition_rules("-D", port)


def create_hosts():
    hosts = [Host("a", 1), Host("b", 2)]
    for host in hosts:
        host.create()
    return hosts
