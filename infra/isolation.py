"""Network isolation of users' servers: iptables rules that the host setup applies and destroy removes.

On one Docker host, users' servers share a bridge network with the hub and the proxy, and
Docker lets every container on a bridge reach every other one and the host itself. The host
setup adds two chains per stack, jumped to for traffic that enters from the users' bridge:

- from ``DOCKER-USER`` (Docker's hook in ``FORWARD``, which it creates and never flushes), for
  traffic to other containers and beyond the host. With ``br_netfilter``
  (``net.bridge.bridge-nf-call-iptables=1``) traffic between two containers on the same bridge
  passes through it too;
- from ``INPUT``, for traffic to the host itself (its SSH, its other services, the published
  ports that the engine's userland proxy serves), which ``DOCKER-USER`` never sees.

Replies always pass, and the hub and the proxy (fixed addresses on the users' network) may open
connections; users' servers may open them only to the hub API and to ``network.egress``. The
names are the stack's own (from ``Naming.digest``), so stacks sharing a host never touch each
other's rules. Pure functions: the scripts are text, run by ``infra.host``.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.hub_config import HUB_API_PORT
from infra.naming import Naming
from infra.rendering import render
from infra.settings import Settings

#: The bridge driver's option naming the bridge's network interface (at most 15 characters).
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
#: Where the host keeps each stack's rules script, re-run at every start of the engine.
RULES_DIR = "/etc/juvini/network-isolation"
#: systemd's drop-in folder for the engine's unit: a file there re-applies the rules at each start.
DOCKER_UNIT_DROPINS = "/etc/systemd/system/docker.service.d"
#: What a refused connection gets at once (EHOSTUNREACH), rather than a wait for a timeout.
REJECT = "REJECT --reject-with icmp-admin-prohibited"


@dataclass(frozen=True)
class HostNames:
    """What the isolation of one stack is called on the Docker host."""

    users_bridge: str
    hub_bridge: str
    forward_chain: str
    input_chain: str
    rules_script: str
    unit_dropin: str
    comment: str


def host_names(naming: Naming) -> HostNames:
    """The stack's bridge interfaces, iptables chains and files on the host."""
    digest = naming.digest
    return HostNames(
        users_bridge=f"jv-{digest}-u",
        hub_bridge=f"jv-{digest}-h",
        forward_chain=f"JUVINI-{digest}-FWD",
        input_chain=f"JUVINI-{digest}-IN",
        rules_script=f"{RULES_DIR}/{naming.prefix}.sh",
        unit_dropin=f"{DOCKER_UNIT_DROPINS}/juvini-isolation-{naming.prefix}.conf",
        comment=f"juvini {naming.prefix} network isolation",
    )


def forward_rules(settings: Settings, names: HostNames) -> list[str]:
    """The forward chain: what users' servers may open towards containers and beyond the host."""
    layout = settings.network.users_layout()
    egress = settings.network.egress
    rules = [
        "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",  # replies, whoever opened the connection
        f"-s {layout.hub}/32 -j RETURN",  # the hub checks and stops servers, reaches its directory ...
        f"-s {layout.proxy}/32 -j RETURN",  # the proxy forwards users' requests to their servers
        f"-d {layout.hub}/32 -p tcp -m tcp --dport {HUB_API_PORT} -j RETURN",  # servers report to the hub API
        f"-o {names.users_bridge} -j {REJECT}",  # other users' servers, the proxy, the hub's other ports
        f"-o {names.hub_bridge} -j {REJECT}",  # the hub's and the proxy's own network
    ]
    if settings.network.open_egress:
        rules.append("-j RETURN")
    else:
        # The original destination: a port the host publishes counts as the address it was asked at.
        rules += [f"-m conntrack --ctorigdst {cidr} -j RETURN" for cidr in egress]
        rules.append(f"-j {REJECT}")
    return [f"-A {names.forward_chain} {rule}" for rule in rules]


def input_rules(settings: Settings, names: HostNames) -> list[str]:
    """The input chain: nothing on the host itself for users' servers. Their DNS resolver (Docker's,
    at 127.0.0.11) lives in each container's own network namespace and needs no rule here."""
    layout = settings.network.users_layout()
    rules = [
        "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        f"-s {layout.hub}/32 -j RETURN",
        f"-s {layout.proxy}/32 -j RETURN",
        f"-j {REJECT}",
    ]
    return [f"-A {names.input_chain} {rule}" for rule in rules]


def jumps(names: HostNames) -> list[tuple[str, list[str]]]:
    """(built-in chain, rule arguments) sending the users' bridge's traffic to the stack's chains."""
    marked = ["-m", "comment", "--comment", names.comment]
    return [
        ("DOCKER-USER", ["-i", names.users_bridge, *marked, "-j", names.forward_chain]),
        ("INPUT", ["-i", names.users_bridge, *marked, "-j", names.input_chain]),
    ]


def rules_script(settings: Settings, naming: Naming) -> str:
    """The script that applies the stack's rules (idempotent), run by the host setup and at engine starts."""
    names = host_names(naming)
    return render(
        "host-network-isolation-rules.sh.j2",
        stack=naming.prefix,
        names=names,
        chains=[names.forward_chain, names.input_chain],
        rules=forward_rules(settings, names) + input_rules(settings, names),
        jumps=jumps(names),
    )


def isolation_scripts(settings: Settings, naming: Naming) -> tuple[str, str]:
    """The (create, delete) host scripts of the stack's network isolation."""
    names = host_names(naming)
    values = {"stack": naming.prefix, "names": names, "rules_dir": RULES_DIR, "dropin_dir": DOCKER_UNIT_DROPINS}
    create = render("host-network-isolation.sh.j2", rules_script=rules_script(settings, naming), **values)
    delete = render(
        "host-network-isolation-delete.sh.j2",
        chains=[names.forward_chain, names.input_chain],
        jumps=jumps(names),
        **values,
    )
    return create, delete
