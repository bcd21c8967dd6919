"""Network isolation of users' servers: its settings, its rules, and what the program declares for it.

The rules themselves are applied to this machine's iptables in the integration tier
(tests/integration/test_network_isolation.py) and tried from users' servers in the e2e tier.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest

from infra.host import privileged
from infra.hub_config import HUB_API_PORT
from infra.isolation import BRIDGE_NAME_OPTION, REJECT, forward_rules, host_names, input_rules, isolation_scripts
from infra.naming import Naming
from infra.settings import ConfigError, parse_settings
from tests.support.pulumi_mocks import ProgramRun, run_program

pytestmark = pytest.mark.unit

DEV = Naming("juvini", "dev")
COMMAND = "command:remote:Command"
NETWORK = "docker:index/network:Network"
#: Linux's limits: interface names (IFNAMSIZ - 1) and iptables chain names.
INTERFACE_NAME_MAX, CHAIN_NAME_MAX = 15, 28


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw)
    return caught.value.problems


# --- settings ---------------------------------------------------------------------------------


def test_on_by_default_on_one_host_with_a_private_users_subnet_and_open_egress() -> None:
    settings = parse_settings({})
    assert settings.network_isolation is True
    layout = settings.network.users_layout()
    assert str(layout.subnet) == "172.16.16.0/22" and layout.subnet.is_private
    assert [str(a) for a in (layout.gateway, layout.hub, layout.proxy)] == ["172.16.16.1", "172.16.16.2", "172.16.16.3"]
    assert str(layout.dynamic) == "172.16.18.0/23"
    assert settings.network.open_egress


def test_the_default_users_subnet_lies_outside_the_pools_the_engine_hands_out() -> None:
    # dockerd's default address pools: 172.17.0.0/16 .. 172.31.0.0/16 and 192.168.0.0/16 in /20s.
    pools = [ipaddress.ip_network(f"172.{second}.0.0/16") for second in range(17, 32)]
    pools.append(ipaddress.ip_network("192.168.0.0/16"))
    subnet = parse_settings({}).network.users_layout().subnet
    assert not any(subnet.overlaps(pool) for pool in pools)


@pytest.mark.parametrize("subnet", ["172.30.11.0/24", "10.8.0.0/16", "192.168.7.0/28"])
def test_fixed_addresses_stay_out_of_the_range_users_servers_get(subnet: str) -> None:
    layout = parse_settings({"network": {"usersSubnet": subnet}}).network.users_layout()
    fixed = [layout.gateway, layout.hub, layout.proxy]
    assert all(address in layout.subnet and address not in layout.dynamic for address in fixed), layout
    assert layout.dynamic.subnet_of(layout.subnet) and layout.dynamic.num_addresses == layout.subnet.num_addresses // 2


#: A Swarm stack (its nodes pull the images from the stack's registry).
SWARM = {"swarm": {"enabled": True}, "images": {"registry": "registry.example.org/lab", "push": True}}


def test_off_by_default_under_swarm_and_refused_when_asked_for() -> None:
    assert parse_settings(SWARM).network_isolation is False
    turned_off = {**SWARM, "security": {"networkIsolation": False}}
    assert parse_settings(turned_off).network_isolation is False
    found = problems({**SWARM, "security": {"networkIsolation": True}})
    refused = r"juvini:security\.networkIsolation: true .*swarm\.enabled.*overlay"
    assert [line for line in found if re.match(refused, line)], found


def test_a_stack_may_turn_it_off_on_one_host() -> None:
    assert parse_settings({"security": {"networkIsolation": False}}).network_isolation is False


@pytest.mark.parametrize(
    ("raw", "line"),
    [
        (
            {"network": {"usersSubnet": "172.16.300.0/24"}},
            "juvini:network.usersSubnet: '172.16.300.0/24' is not allowed: must be a CIDR network",
        ),
        (
            {"network": {"usersSubnet": "172.16.16.1/22"}},
            "juvini:network.usersSubnet: '172.16.16.1/22' is not allowed: must be a CIDR network such as "
            "172.30.0.0/24 (172.16.16.1/22 has host bits set)",
        ),
        (
            {"network": {"usersSubnet": "172.16.16.0/29"}},
            "juvini:network.usersSubnet: '172.16.16.0/29' is not allowed: must have a prefix of /28 or shorter: "
            "its lower half holds the gateway, the hub and the proxy, its upper half users' servers",
        ),
        (
            {"network": {"usersSubnet": "100.64.0.0/24"}},
            "juvini:network.usersSubnet: '100.64.0.0/24' is not allowed: must be a private range",
        ),
        (
            {"network": {"usersSubnet": "fd00:10::/64"}},
            "juvini:network.usersSubnet: 'fd00:10::/64' is not allowed: must be an IPv4 network with "
            "security.networkIsolation: its rules are IPv4 iptables rules",
        ),
        (
            {"network": {"hubSubnet": "172.16.17.0/24"}},
            "juvini:network.hubSubnet: '172.16.17.0/24' is not allowed: must not overlap network.usersSubnet "
            "172.16.16.0/22 (its default)",
        ),
        (
            {"network": {"hubSubnet": "10.1.0.0/16", "usersSubnet": "10.1.2.0/24"}},
            "juvini:network.usersSubnet: '10.1.2.0/24' is not allowed: must not overlap network.hubSubnet 10.1.0.0/16",
        ),
        (
            {"network": {"egress": ["10.0.0.0/8", "10.20.0.0/33"]}},
            "juvini:network.egress[1]: '10.20.0.0/33' is not allowed: must be a CIDR network",
        ),
        (
            {"network": {"egress": ["fd00::/8"]}},
            "juvini:network.egress[0]: 'fd00::/8' is not allowed: must be an IPv4 CIDR such as 10.20.0.0/16",
        ),
        (
            {"network": {"egress": ["10.0.0.0/8", "10.0.0.0/8"]}},
            'juvini:network.egress: ["10.0.0.0/8", "10.0.0.0/8"] is not allowed: lists [\'10.0.0.0/8\'] more than once',
        ),
        (
            {"network": {"egress": ["10.0.0.0/8", "172.16.17.0/24"]}},
            "juvini:network.egress[1]: '172.16.17.0/24' is not allowed: lies inside network.usersSubnet "
            "172.16.16.0/22: the lab's own networks are never reachable from users' servers",
        ),
        (
            {"security": {"networkIsolation": False}, "network": {"egress": ["10.0.0.0/8"]}},
            'juvini:network.egress: ["10.0.0.0/8"] is not allowed: only with security.networkIsolation (off here)',
        ),
    ],
    ids=[
        "not-an-address",
        "host-bits",
        "too-small",
        "public",
        "ipv6-users",
        "default-overlapped",
        "overlap",
        "bad-egress",
        "ipv6-egress",
        "egress-twice",
        "egress-inside-the-lab",
        "egress-without-isolation",
    ],
)
def test_refused_settings_name_the_key_the_value_and_what_is_allowed(raw: dict[str, Any], line: str) -> None:
    found = problems(raw)
    assert [problem for problem in found if problem.startswith(line)], found


def test_a_supernet_of_the_lab_may_be_allowed_out() -> None:
    """The company's private ranges hold the lab's networks; the rules still refuse the lab's own."""
    settings = parse_settings({"network": {"egress": ["10.0.0.0/8", "172.16.0.0/12"]}})
    assert settings.network.egress == ["10.0.0.0/8", "172.16.0.0/12"] and not settings.network.open_egress


# --- names and rules ----------------------------------------------------------------------------


def test_names_fit_the_kernels_limits_and_differ_between_stacks() -> None:
    long = host_names(Naming("a-rather-long-project-name", "production-europe-west-2"))
    dev, prod = host_names(DEV), host_names(Naming("juvini", "prod"))
    for names in (long, dev, prod):
        assert max(len(names.users_bridge), len(names.hub_bridge)) <= INTERFACE_NAME_MAX, names
        assert max(len(names.forward_chain), len(names.input_chain)) <= CHAIN_NAME_MAX, names
    for field in ("users_bridge", "hub_bridge", "forward_chain", "input_chain", "rules_script", "unit_dropin"):
        assert getattr(dev, field) != getattr(prod, field), field


def test_forward_rules_let_replies_the_hub_and_the_proxy_through_and_users_reach_only_the_hub_api() -> None:
    names = host_names(DEV)
    chain, bridge = names.forward_chain, names.users_bridge
    assert forward_rules(parse_settings({}), names) == [
        f"-A {chain} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        f"-A {chain} -s 172.16.16.2/32 -j RETURN",
        f"-A {chain} -s 172.16.16.3/32 -j RETURN",
        f"-A {chain} -d 172.16.16.2/32 -p tcp -m tcp --dport {HUB_API_PORT} -j RETURN",
        f"-A {chain} -o {bridge} -j {REJECT}",
        f"-A {chain} -o {names.hub_bridge} -j {REJECT}",
        f"-A {chain} -j RETURN",
    ]


def test_listed_egress_is_allowed_by_original_destination_and_the_rest_refused() -> None:
    names = host_names(DEV)
    settings = parse_settings({"network": {"egress": ["10.20.0.0/16", "192.0.2.10/32"], "usersSubnet": "10.9.0.0/24"}})
    rules = forward_rules(settings, names)
    assert rules[1:4] == [
        f"-A {names.forward_chain} -s 10.9.0.2/32 -j RETURN",
        f"-A {names.forward_chain} -s 10.9.0.3/32 -j RETURN",
        f"-A {names.forward_chain} -d 10.9.0.2/32 -p tcp -m tcp --dport {HUB_API_PORT} -j RETURN",
    ]
    assert rules[-3:] == [
        f"-A {names.forward_chain} -m conntrack --ctorigdst 10.20.0.0/16 -j RETURN",
        f"-A {names.forward_chain} -m conntrack --ctorigdst 192.0.2.10/32 -j RETURN",
        f"-A {names.forward_chain} -j {REJECT}",
    ]
    nowhere = parse_settings({"network": {"egress": []}})
    assert forward_rules(nowhere, names)[-1] == f"-A {names.forward_chain} -j {REJECT}"


def test_the_host_itself_answers_replies_and_the_lab_s_own_containers_only() -> None:
    names = host_names(DEV)
    assert input_rules(parse_settings({}), names) == [
        f"-A {names.input_chain} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        f"-A {names.input_chain} -s 172.16.16.2/32 -j RETURN",
        f"-A {names.input_chain} -s 172.16.16.3/32 -j RETURN",
        f"-A {names.input_chain} -j {REJECT}",
    ]


def test_create_replaces_its_own_chains_in_one_commit_and_adds_missing_jumps_only() -> None:
    names = host_names(DEV)
    create, _ = isolation_scripts(parse_settings({}), DEV)
    restore = create[create.index("iptables-restore -w --noflush <<'RULES'") : create.index("\nRULES\n")]
    assert f":{names.forward_chain} - [0:0]" in restore and f":{names.input_chain} - [0:0]" in restore
    assert restore.rstrip().endswith("COMMIT")
    for chain, target in (("DOCKER-USER", names.forward_chain), ("INPUT", names.input_chain)):
        jump = f"{chain} '-i' '{names.users_bridge}' '-m' 'comment' '--comment' '{names.comment}' '-j' '{target}'"
        assert f"if ! iptables -w -C {jump} 2>/dev/null; then\n    iptables -w -I {chain} 1 '-i'" in create
    assert "bridge-nf-call-iptables" in create and 'echo 1 > "$bridge_nf"' in create
    assert "ExecStartPost=-/bin/sh $rules_script" in create and f"rules_script='{names.rules_script}'" in create


def test_delete_removes_exactly_this_stacks_jumps_chains_and_files() -> None:
    names, other = host_names(DEV), host_names(Naming("juvini", "prod"))
    _, delete = isolation_scripts(parse_settings({}), DEV)
    for chain in (names.forward_chain, names.input_chain):
        assert f"iptables -w -F '{chain}'" in delete and f"iptables -w -X '{chain}'" in delete
    assert f"while iptables -w -D DOCKER-USER '-i' '{names.users_bridge}'" in delete
    assert f"while iptables -w -D INPUT '-i' '{names.users_bridge}'" in delete
    assert 'rm -f "$rules_script"' in delete and f"dropin='{names.unit_dropin}'" in delete
    for value in (other.forward_chain, other.input_chain, other.users_bridge, other.rules_script):
        assert value not in delete
    assert "iptables -w -F DOCKER-USER" not in delete and "iptables -w -F INPUT" not in delete


# --- the program ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ssh_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    path.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n")
    return path


def program(ssh_key_file: Path, **sections: Any) -> ProgramRun:
    config = {"host": {"sshPrivateKeyFile": str(ssh_key_file)}, **sections}
    return run_program(config, stack="dev")


@pytest.fixture(scope="module")
def isolated(ssh_key_file: Path) -> ProgramRun:
    return program(ssh_key_file)


def test_the_users_network_has_its_layout_and_both_bridges_the_stacks_names(isolated: ProgramRun) -> None:
    names = host_names(DEV)
    users, hub = isolated.named("juvini-dev-networks-users"), isolated.named("juvini-dev-networks-hub")
    assert users.inputs["ipamConfigs"] == [
        {"subnet": "172.16.16.0/22", "gateway": "172.16.16.1", "ipRange": "172.16.18.0/23"}
    ], users
    assert users.inputs["options"] == {BRIDGE_NAME_OPTION: names.users_bridge}, users
    assert hub.inputs["options"] == {BRIDGE_NAME_OPTION: names.hub_bridge}, hub


def test_hub_and_proxy_have_their_fixed_addresses_on_the_users_network(isolated: ProgramRun) -> None:
    for name, address in (("juvini-dev-hub-hub", "172.16.16.2"), ("juvini-dev-proxy-proxy", "172.16.16.3")):
        container = isolated.named(name)
        networks = {entry["name"]: entry.get("ipv4Address") for entry in container.inputs["networksAdvanced"]}
        assert networks == {"juvini-dev-hub-net": None, "juvini-dev-users-net": address}, container


def test_the_rules_are_a_host_command_in_place_before_the_lab_and_removed_after_users_servers(
    isolated: ProgramRun,
) -> None:
    command = isolated.named("juvini-dev-host-network-isolation")
    assert isolated.by_urn[command.parent].type == "juvini:index:Host", command
    settings = parse_settings({})
    create, delete = isolation_scripts(settings, DEV)
    assert command.inputs["create"] == privileged(settings, create), command
    assert command.inputs["delete"] == privileged(settings, delete), command
    for name in ("juvini-dev-proxy-proxy", "juvini-dev-hub-hub", "juvini-dev-host-user-servers-cleanup"):
        dependent = isolated.named(name)
        # Destroy runs in reverse: users' servers are gone before their rules.
        assert isolated.depends_on(dependent, command), f"{dependent} does not wait for {command}"


@pytest.mark.parametrize(
    "sections",
    [{"security": {"networkIsolation": False}}, SWARM],
    ids=["turned-off", "swarm"],
)
def test_without_isolation_nothing_of_it_is_declared(ssh_key_file: Path, sections: dict[str, Any]) -> None:
    run = program(ssh_key_file, **sections)
    assert not [r for r in run.of_type(COMMAND) if r.name.endswith("network-isolation")]
    for network in run.of_type(NETWORK):
        assert not network.inputs.get("options"), network
        assert network.inputs.get("ipamConfigs") in (None, [{"subnet": "172.16.16.0/22"}]), network
    for name in ("juvini-dev-hub-hub", "juvini-dev-proxy-proxy"):
        assert all("ipv4Address" not in entry for entry in run.named(name).inputs["networksAdvanced"]), name
