"""Network isolation applied for real: two stacks' networks and rules on this machine's engine and
iptables (the host commands over SSH, as `pulumi up` runs them), tried from scratch containers.

Each stack gets the program's own Networks and isolation command; stand-ins for the hub (at its
fixed address, with the hub API port and another one), the proxy and users' servers are small
perl servers in the base image. Probes connect from inside the containers: "connected", "refused"
(no listener), "rejected" (the isolation rules: EHOSTUNREACH at once) or "timeout" (dropped, e.g.
by Docker's own isolation between bridges).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pulumi
import pulumi_docker
import pytest

from infra.host import Host
from infra.hub_config import HUB_API_PORT, PROXY_API_PORT
from infra.isolation import HostNames, host_names
from infra.naming import Naming
from infra.network import Networks
from infra.settings import load_settings, parse_settings
from tests.support.engine import engine_restart_unsafe, restart_engine
from tests.support.lab_client import wait_for
from tests.support.local_stack import SSH_KEY, lab_paths, local_host
from tests.support.outside import Outside, outside_machine
from tests.support.provider_double import Deployment, _ssh, apply

pytestmark = pytest.mark.integration

#: Made by tests/setup.sh; perl-base is in it, so servers and probes need nothing more.
IMAGE = "juvini-base:bookworm"
SERVER_PORT = 8888  # what a user's server listens on
OTHER_HUB_PORT = 8082  # a port of the hub other than its API
#: Stack -> (users' subnet, egress). Apart from the e2e labs' users' subnets (172.16.16.0/22 ...).
STACKS = {
    "it-iso-a": ("172.16.232.0/24", ["0.0.0.0/0"]),
    "it-iso-b": ("172.16.233.0/24", ["198.51.100.2/32"]),
}
OUTSIDE_SUBNET = "198.51.100.0/29"

SERVE = (
    "use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalPort => $ARGV[0], Listen => 64, ReuseAddr => 1)"
    ' or die "listen $ARGV[0]: $!"; while (my $c = $s->accept) { print $c "ok\\n"; close $c }'
)
#: Blocking connect with a deadline: how it ends tells rejected (EHOSTUNREACH), refused, dropped apart.
PROBE = (
    "use Socket; my ($h, $p) = @ARGV; socket(my $s, PF_INET, SOCK_STREAM, 0) or die;"
    ' $SIG{ALRM} = sub { print "timeout\\n"; exit 0 }; alarm 4;'
    ' if (connect($s, sockaddr_in($p, inet_aton($h)))) { print "connected\\n" }'
    ' elsif ($!{EHOSTUNREACH}) { print "rejected\\n" } elsif ($!{ECONNREFUSED}) { print "refused\\n" }'
    ' else { print "failed: $!\\n" }'
)


def declare() -> None:
    settings = load_settings()
    naming = Naming(pulumi.get_project(), pulumi.get_stack())
    host = Host("iso-host", settings)
    provider = pulumi_docker.Provider("iso-docker", host=settings.docker_host)
    # As the lab on one host: live-restore on (users' servers outlive an engine restart), the rules in place.
    host.engine_live_restore(naming)
    Networks("iso-networks", settings, naming, host, opts=pulumi.ResourceOptions(providers={"docker": provider}))
    host.network_isolation(naming)


def stack_config(root: Path, subnet: str, egress: list[str]) -> dict[str, Any]:
    return {
        "host": local_host(),
        "paths": lab_paths(root),
        "network": {"usersSubnet": subnet, "egress": egress},
    }


def iptables(*args: str) -> str:
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True, check=True, timeout=60).stdout


def chain_rules(chain: str) -> list[str]:
    return iptables("-S", chain).splitlines()


def chain_exists(chain: str) -> bool:
    return subprocess.run(["iptables", "-w", "-n", "-L", chain], capture_output=True, check=False).returncode == 0


def jumps_to(chain: str, target: str) -> list[str]:
    return [rule for rule in chain_rules(chain) if rule.endswith(f"-j {target}")]


@dataclass
class Stack:
    name: str
    deployment: Deployment
    names: HostNames
    containers: dict[str, Any]
    addresses: dict[str, str]
    ports: dict[str, list[int]]

    def probe(self, source: str, address: str, port: int) -> str:
        result = self.containers[source].exec_run(["perl", "-e", PROBE, address, str(port)])
        return result.output.decode().strip()

    def rules(self) -> dict[str, list[str]]:
        return {chain: chain_rules(chain) for chain in (self.names.forward_chain, self.names.input_chain)}


def _listening_probe(address: str, port: int) -> Callable[[], bool]:
    def listening() -> bool:
        # From the host: its own connections leave through OUTPUT, and the replies are ESTABLISHED.
        with socket.create_connection((address, port), timeout=2):
            return True

    return listening


def _start(
    client: docker.DockerClient, name: str, network: str, address: str | None, ports: list[int], extra: str | None
) -> tuple[Any, str]:
    """A container on ``network`` (at ``address`` when given, and on ``extra`` too) serving ``ports``."""
    servers = " & ".join(f"perl -e '{SERVE}' {port}" for port in ports) + " & wait"
    created = client.api.create_container(
        IMAGE,
        ["sh", "-c", servers],
        name=name,
        labels={"org.juvini.test": "network-isolation"},
        host_config=client.api.create_host_config(cap_drop=["ALL"]),
        networking_config=client.api.create_networking_config(
            {network: client.api.create_endpoint_config(ipv4_address=address)}
        ),
    )
    container = client.containers.get(created["Id"])
    if extra:
        client.networks.get(extra).connect(container)
    container.start()
    container.reload()
    ip: str = container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
    for port in ports:
        wait_for(f"{name} to listen on {ip}:{port}", _listening_probe(ip, port), timeout=30)
    return container, ip


def _bring_up(client: docker.DockerClient, root: Path, stack: str) -> Stack:
    subnet, egress = STACKS[stack]
    deployment = apply(declare, stack_config(root / stack, subnet, egress), stack)
    naming = Naming("juvini", stack)
    users_net, hub_net = naming.physical("users-net"), naming.physical("hub-net")
    layout = parse_settings({"network": {"usersSubnet": subnet}}).network.users_layout()
    containers, addresses = {}, {"gateway": str(layout.gateway)}
    specs = {
        "hub": (str(layout.hub), [HUB_API_PORT, OTHER_HUB_PORT], hub_net),
        "proxy": (str(layout.proxy), [PROXY_API_PORT], hub_net),
        "alice": (None, [SERVER_PORT], None),
        "bob": (None, [SERVER_PORT], None),
    }
    for role, (address, ports, extra) in specs.items():
        name = f"jv-it-iso-{stack}-{role}"
        containers[role], addresses[role] = _start(client, name, users_net, address, ports, extra)
    listening = {role: spec[1] for role, spec in specs.items()}
    return Stack(stack, deployment, host_names(naming), containers, addresses, listening)


def _remove_containers(client: docker.DockerClient) -> None:
    for container in client.containers.list(all=True, filters={"label": "org.juvini.test=network-isolation"}):
        container.remove(force=True)


@dataclass
class World:
    stacks: dict[str, Stack]
    outside: Outside
    client: docker.DockerClient


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    if not SSH_KEY.is_file():
        pytest.fail(f"{SSH_KEY} is missing: run tests/setup.sh")
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=300)
    _remove_containers(client)
    root = Path(tempfile.mkdtemp(prefix="juvini-it-iso-", dir="/var/tmp"))
    stacks: dict[str, Stack] = {}
    try:
        with outside_machine("jv-it-out", OUTSIDE_SUBNET) as outside:
            for stack in STACKS:
                stacks[stack] = _bring_up(client, root, stack)
            yield World(stacks, outside, client)
    finally:
        _remove_containers(client)
        errors = [error for stack in stacks.values() for error in stack.deployment.destroy()]
        shutil.rmtree(root, ignore_errors=True)
        assert not errors, errors


def test_a_users_server_reaches_the_hub_api_and_outside_and_nothing_else(world: World) -> None:
    a, b = world.stacks["it-iso-a"], world.stacks["it-iso-b"]
    seen = {
        "another user's server": a.probe("alice", a.addresses["bob"], SERVER_PORT),
        "the hub API": a.probe("alice", a.addresses["hub"], HUB_API_PORT),
        "another port of the hub": a.probe("alice", a.addresses["hub"], OTHER_HUB_PORT),
        "the proxy API": a.probe("alice", a.addresses["proxy"], PROXY_API_PORT),
        "the host's sshd at the gateway": a.probe("alice", a.addresses["gateway"], 22),
        "the host's sshd at the other stack's gateway": a.probe("alice", b.addresses["gateway"], 22),
        "the outside machine": a.probe("alice", world.outside.addresses[0], world.outside.port),
        "the outside machine's other address": a.probe("alice", world.outside.addresses[1], world.outside.port),
    }
    assert seen == {
        "another user's server": "rejected",
        "the hub API": "connected",
        "another port of the hub": "rejected",
        "the proxy API": "rejected",
        "the host's sshd at the gateway": "rejected",
        "the host's sshd at the other stack's gateway": "rejected",
        "the outside machine": "connected",
        "the outside machine's other address": "connected",
    }


def test_the_hub_and_the_proxy_still_open_connections_to_users_servers(world: World) -> None:
    a = world.stacks["it-iso-a"]
    for source in ("hub", "proxy"):
        assert a.probe(source, a.addresses["alice"], SERVER_PORT) == "connected", source


def test_listed_egress_is_open_and_the_rest_of_the_outside_refused(world: World) -> None:
    b, outside = world.stacks["it-iso-b"], world.outside
    assert b.probe("alice", outside.addresses[0], outside.port) == "connected"  # listed: 198.51.100.2/32
    assert b.probe("alice", outside.addresses[1], outside.port) == "rejected"
    assert b.probe("alice", b.addresses["hub"], HUB_API_PORT) == "connected"
    assert b.probe("alice", b.addresses["bob"], SERVER_PORT) == "rejected"


def test_the_other_stacks_containers_are_out_of_reach(world: World) -> None:
    a, b = world.stacks["it-iso-a"], world.stacks["it-iso-b"]
    # Another bridge: Docker's own isolation between networks drops it (no answer at all).
    assert a.probe("alice", b.addresses["hub"], HUB_API_PORT) in ("timeout", "rejected")
    assert b.probe("alice", a.addresses["alice"], SERVER_PORT) in ("timeout", "rejected")


def test_users_servers_have_no_ipv6_address_to_go_around_the_rules(world: World) -> None:
    """The rules are IPv4; a bridge without IPv6 leaves containers none (not even link-local)."""
    interfaces = world.stacks["it-iso-a"].containers["alice"].exec_run(["cat", "/proc/net/if_inet6"])
    assert [line.split()[-1] for line in interfaces.output.decode().splitlines()] in ([], ["lo"]), interfaces.output


def test_each_stack_has_its_own_chains_jumped_to_once_from_docker_user_and_input(world: World) -> None:
    for stack in world.stacks.values():
        names = stack.names
        assert len(jumps_to("DOCKER-USER", names.forward_chain)) == 1, chain_rules("DOCKER-USER")
        assert len(jumps_to("INPUT", names.input_chain)) == 1, chain_rules("INPUT")
        assert Path(names.rules_script).is_file() and Path(names.rules_script).stat().st_mode & 0o777 == 0o700
    assert chain_rules("DOCKER-USER")[-1] == "-A DOCKER-USER -j RETURN", "Docker's own RETURN stays last"


def test_a_second_create_changes_nothing(world: World) -> None:
    for stack in world.stacks.values():
        before = (stack.rules(), chain_rules("DOCKER-USER"), chain_rules("INPUT"))
        (command,) = [item for item in stack.deployment.double.applied if item.name.endswith("network-isolation")]
        again = _ssh(stack.deployment.double, command.inputs["connection"], command.inputs["create"], None)
        assert again.returncode == 0, again.stderr
        assert (stack.rules(), chain_rules("DOCKER-USER"), chain_rules("INPUT")) == before, stack.name
    a = world.stacks["it-iso-a"]
    assert a.probe("alice", a.addresses["bob"], SERVER_PORT) == "rejected"


def test_the_rules_live_through_an_engine_restart(world: World) -> None:
    unsafe = engine_restart_unsafe()
    if unsafe:
        pytest.skip(unsafe)
    a = world.stacks["it-iso-a"]
    before = {stack.name: stack.rules() for stack in world.stacks.values()}
    restart_engine()
    after = {stack.name: stack.rules() for stack in world.stacks.values()}
    assert after == before
    for stack in world.stacks.values():
        assert len(jumps_to("DOCKER-USER", stack.names.forward_chain)) == 1, chain_rules("DOCKER-USER")
        assert len(jumps_to("INPUT", stack.names.input_chain)) == 1, chain_rules("INPUT")
    # FORWARD still passes through DOCKER-USER before any rule of Docker's accepts. (After this restart,
    # with containers kept running, Docker 20.10 puts its isolation chain, which only drops, first.)
    forward = iptables("-S", "FORWARD").splitlines()
    first_accept = next(index for index, rule in enumerate(forward) if rule.endswith("-j ACCEPT"))
    assert "-A FORWARD -j DOCKER-USER" in forward[:first_accept], forward
    for role, container in a.containers.items():
        # Live-restore keeps them running (or should: its own tests say); a stand-in that did not
        # live through it is started again, with its address, so the probes below still run.
        container.reload()
        if container.status != "running":
            container.start()
            for port in a.ports[role]:
                wait_for(f"{container.name} on {port}", _listening_probe(a.addresses[role], port), timeout=30)
    assert a.probe("alice", a.addresses["bob"], SERVER_PORT) == "rejected"
    assert a.probe("alice", a.addresses["hub"], HUB_API_PORT) == "connected"
    assert a.probe("alice", world.outside.addresses[0], world.outside.port) == "connected"


def test_destroying_one_stack_removes_its_rules_and_keeps_the_others(world: World) -> None:
    a, b = world.stacks["it-iso-a"], world.stacks["it-iso-b"]
    kept = a.rules()
    (command,) = [item for item in b.deployment.double.applied if item.name.endswith("network-isolation")]
    for container in b.containers.values():
        container.remove(force=True)
    assert not b.deployment.destroy()
    for chain in (b.names.forward_chain, b.names.input_chain):
        assert not chain_exists(chain), chain
    assert not jumps_to("DOCKER-USER", b.names.forward_chain) and not jumps_to("INPUT", b.names.input_chain)
    assert not Path(b.names.rules_script).exists()
    assert a.rules() == kept
    assert len(jumps_to("DOCKER-USER", a.names.forward_chain)) == 1
    assert len(jumps_to("INPUT", a.names.input_chain)) == 1
    assert a.probe("alice", a.addresses["bob"], SERVER_PORT) == "rejected"
    assert a.probe("alice", a.addresses["hub"], HUB_API_PORT) == "connected"
    # A destroy run again (after an interruption) succeeds and leaves the other stack alone.
    again = _ssh(b.deployment.double, command.inputs["connection"], command.inputs["delete"], None)
    assert again.returncode == 0, again.stderr
    assert a.rules() == kept
