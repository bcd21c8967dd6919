"""The lab's Docker Swarm: the Docker host as its manager, the workers joined, labelled, checked.

Docker Swarm does the scheduling; this component only builds the swarm and keeps the stack's
part of it in step with ``swarm.*``, each step a ``remote.Command`` over SSH like the host setup:

- the manager: made a swarm manager if it is not one (``docker swarm init``), remembered with a
  per-stack marker so that destroy leaves a swarm it did not create (or that others use) alone;
- each worker: prepared like the Docker host (a :class:`~infra.host.Host` over its own SSH
  connection), its shared storage checked, then joined with the workers' join token, which is a
  secret output read on the manager and handed to the worker's engine API on standard input,
  never on a command line; then found Ready and labelled from the manager;
- on destroy, or when a worker leaves ``swarm.workers``: a worker this stack joined is drained
  (until its tasks are gone), leaves, and is removed from the manager's node list; nodes it did
  not join only lose the stack's labels. With ``swarm.existing`` nothing is initialised, joined
  or left: the program checks the operator's swarm and labels its nodes.

Storage that follows the user: the folders users' servers mount must be one shared filesystem on
every node. A marker written into each through the manager must be read back through every
worker, or ``up`` fails naming the node and the folder.
"""

from __future__ import annotations

import base64
import hashlib
import json

import pulumi
import pulumi_random as random
from pulumi_command import remote

from infra.host import REGISTRY_CERTS_DIR, Host, Node, mounted_folders
from infra.images import Images
from infra.naming import Naming
from infra.rendering import render
from infra.settings import Settings
from infra.settings.host import STACK_NODE_LABEL

TYPE = "juvini:index:SwarmCluster"
#: Where swarm steps keep their markers and records on each node (root-only).
SWARM_MARKERS = "/etc/docker/juvini-swarm"
#: How long a node may take to join, be Ready, leave or be down.
NODE_DEADLINE_SECONDS = 90
#: How long a drained node's tasks may take to stop (users' servers have a stop grace period).
DRAIN_DEADLINE_SECONDS = 300


def node_labels(naming: Naming, labels: dict[str, str]) -> dict[str, str]:
    """The labels the program puts on a node: the stack's own, then the operator's."""
    return {STACK_NODE_LABEL: naming.prefix, **labels}


def manager_scripts(settings: Settings, naming: Naming, marker_dir: str = SWARM_MARKERS) -> tuple[str, str]:
    """The (create, delete) scripts making the Docker host a swarm manager (or checking it is one)."""
    swarm = settings.swarm
    values = {
        "existing": swarm.existing,
        "advertise_address": swarm.manager.effective_advertise_address(settings.host.address),
        "marker_dir": marker_dir,
        "stack": naming.prefix,
        "node": str(Node.manager(settings)),
    }
    create = render("swarm-manager.sh.j2", **values)
    delete = "true" if swarm.existing else render("swarm-manager-delete.sh.j2", **values)
    return create, delete


def join_token_script() -> str:
    """Script printing a worker's join request (the join token and the managers' addresses)."""
    return render("swarm-join-token.sh.j2")


def join_scripts(
    settings: Settings,
    naming: Naming,
    node: Node,
    advertise_address: str | None,
    marker_dir: str = SWARM_MARKERS,
    deadline_seconds: int = NODE_DEADLINE_SECONDS,
) -> tuple[str, str]:
    """The (create, delete) scripts joining ``node`` to the swarm (or finding it in an existing one)."""
    values = {
        "existing": settings.swarm.existing,
        "advertise_address": advertise_address,
        "marker_dir": marker_dir,
        "stack": naming.prefix,
        "node": str(node),
        "docker_socket": settings.docker_socket,
        "deadline_seconds": deadline_seconds,
    }
    create = render("swarm-join.sh.j2", **values)
    delete = "true" if settings.swarm.existing else render("swarm-join-delete.sh.j2", **values)
    return create, delete


def node_scripts(
    naming: Naming,
    node: Node,
    labels: dict[str, str],
    marker_dir: str = SWARM_MARKERS,
    deadline_seconds: int = NODE_DEADLINE_SECONDS,
    drain_deadline_seconds: int = DRAIN_DEADLINE_SECONDS,
) -> tuple[str, str]:
    """The (create, delete) scripts run on the manager for ``node``: Ready and labelled; drained on delete."""
    values = {
        "marker_dir": marker_dir,
        "stack": naming.prefix,
        "name": node.name,
        "node": str(node),
        "labels": labels,
        "label_keys": list(labels),
        "stack_label": STACK_NODE_LABEL,
        "deadline_seconds": deadline_seconds,
    }
    values_on_delete = values | {"deadline_seconds": drain_deadline_seconds}
    return render("swarm-node.sh.j2", **values), render("swarm-node-delete.sh.j2", **values_on_delete)


def node_removal_script(
    naming: Naming, node: Node, marker_dir: str = SWARM_MARKERS, deadline_seconds: int = NODE_DEADLINE_SECONDS
) -> str:
    """The delete script removing a worker this stack joined from the manager's node list."""
    return render(
        "swarm-node-removal-delete.sh.j2",
        marker_dir=marker_dir,
        stack=naming.prefix,
        name=node.name,
        node=str(node),
        deadline_seconds=deadline_seconds,
    )


def storage_marker_prefix(naming: Naming) -> str:
    """The start of the file names of the stack's shared-storage markers."""
    return f".juvini-storage-check-{naming.prefix}-"


def storage_scripts(settings: Settings, naming: Naming, nonce: str, node: Node) -> dict[str, str]:
    """The shared-storage check's scripts: markers written (and removed) on the manager, read on ``node``.

    The markers of an earlier check that failed on some node (so never removed) go with the next
    check's, and on destroy: every marker of the stack, whatever its nonce."""
    values = {
        "marker": storage_marker_prefix(naming) + nonce,
        "marker_prefix": storage_marker_prefix(naming),
        "nonce": nonce,
        "folders": mounted_folders(settings),
        "data_dir": settings.paths.data_dir,
    }
    return {
        "markers": render("swarm-storage-markers.sh.j2", node=str(Node.manager(settings)), **values),
        "markers-delete": render("swarm-storage-markers-delete.sh.j2", **values),
        "check": render("swarm-storage-check.sh.j2", node=str(node), **values),
    }


def registry_auth_header(settings: Settings) -> str | None:
    """The pull login (images.pullUsername) as Docker's ``X-Registry-Auth`` header value; None without one."""
    images = settings.images
    if images.pull_username is None or images.pull_password is None:
        return None
    login = {
        "username": images.pull_username,
        "password": images.pull_password.get_secret_value(),
        "serveraddress": images.registry_server(),
    }
    return base64.urlsafe_b64encode(json.dumps(login).encode()).decode("ascii")


def registry_check_script(settings: Settings, node: Node, images: list[str]) -> str:
    """Script proving ``node``'s engine can fetch each of ``images`` from the registry (login on stdin)."""
    return render(
        "swarm-registry-check.sh.j2",
        node=str(node),
        images=images,
        server=settings.images.registry_server(),
        certs_dir=REGISTRY_CERTS_DIR,
        docker_socket=settings.docker_socket,
        pull_login=settings.images.pull_username is not None,
    )


def _reached(node: Node) -> str:
    """How ``node`` is reached, credentials as a digest: a change means checking its storage again."""
    credential = node.private_key or node.password
    digest = hashlib.sha256(credential.get_secret_value().encode()).hexdigest() if credential else "agent"
    return f"{node.ssh_user}@{node.address}:{node.ssh_port} sudo={node.use_sudo} {node.host_key} {digest}"


class SwarmCluster(pulumi.ComponentResource):
    """The lab's swarm: the manager, its workers prepared, checked, joined and labelled."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        naming: Naming,
        manager: Host,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        swarm = settings.swarm
        self._settings, self._naming, self._manager = settings, naming, manager
        create, delete = manager_scripts(settings, naming)
        self.manager = remote.Command(
            f"{name}-manager",
            connection=manager.connection,
            create=manager.privileged(create),
            delete=manager.privileged(delete),
            opts=pulumi.ResourceOptions(parent=self, depends_on=manager.ready),
        )
        self.manager_node = self._node_command(
            f"{name}-manager-node", manager.node, swarm.manager.labels, self.manager.stdout, [self.manager]
        )
        self.join_token: remote.Command | None = None
        if not swarm.existing and swarm.workers:
            self.join_token = remote.Command(
                f"{name}-join-token",
                connection=manager.connection,
                create=manager.privileged(join_token_script()),
                # The token is a secret: never logged, kept encrypted in the state, and not handed
                # to the command's next run in its environment.
                logging=remote.Logging.NONE,
                add_previous_output_in_env=False,
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=[self.manager], additional_secret_outputs=["stdout", "stderr"]
                ),
            )

        self.workers: dict[str, Host] = {}
        self.joins: dict[str, remote.Command] = {}
        #: On the manager, per worker: the worker Ready and labelled (drained on delete).
        self.nodes: dict[str, remote.Command] = {}
        self.storage_checks: dict[str, remote.Command] = {}
        worker_nodes = [(worker, Node.of_worker(settings, worker)) for worker in swarm.workers]
        for worker, node in worker_nodes:
            self.workers[worker.name] = Host(
                f"{name}-worker-{worker.name}", settings, opts=pulumi.ResourceOptions(parent=self), node=node
            )
        self._check_storage(name, [node for _, node in worker_nodes])
        for worker, node in worker_nodes:
            self._join(name, node, worker.effective_advertise_address(), worker.labels)

        #: Per node: its engine trusting the registry's CA (images.registryCa), before it pulls.
        self.registry_trust: dict[str, remote.Command] = {}
        for host in self.workers.values():
            trust = host.registry_trust(naming)
            if trust is not None:
                self.registry_trust[host.node.name] = trust
        #: Per node: the registry check (:meth:`check_registry`).
        self.registry_checks: dict[str, remote.Command] = {}

        #: What must wait for the swarm: every node joined, Ready and labelled.
        self.ready: list[pulumi.Resource] = [self.manager, self.manager_node, *self.nodes.values()]
        self.register_outputs(
            {"managerNode": self.manager_node.stdout, "workers": {key: c.stdout for key, c in self.nodes.items()}}
        )

    def _node_command(
        self,
        name: str,
        node: Node,
        labels: dict[str, str],
        identity: pulumi.Output[str],
        after: list[pulumi.Resource],
    ) -> remote.Command:
        """On the manager: ``node`` (its id and how it joined on ``identity``) Ready and labelled."""
        create, delete = node_scripts(self._naming, node, node_labels(self._naming, labels))
        return remote.Command(
            name,
            connection=self._manager.connection,
            create=self._manager.privileged(create),
            delete=self._manager.privileged(delete),
            stdin=identity,
            opts=pulumi.ResourceOptions(parent=self, depends_on=after),
        )

    def _check_storage(self, name: str, nodes: list[Node]) -> None:
        """Markers written through the manager, read back through every worker; done again (a new
        nonce) whenever a node's connection or the folders change."""
        if not nodes:
            return
        manager = self._manager
        workers = [self.workers[node.name] for node in nodes]
        keepers = {
            "folders": ",".join(mounted_folders(self._settings)),
            **{node.name: _reached(node) for node in [manager.node, *nodes]},
        }
        self.storage_nonce = random.RandomBytes(
            f"{name}-storage-nonce",
            length=8,
            # Secret: they hold digests of the nodes' credentials.
            keepers=pulumi.Output.secret(keepers),
            opts=pulumi.ResourceOptions(parent=self),
        )
        nonce = self.storage_nonce.hex
        scripts = nonce.apply(lambda value: storage_scripts(self._settings, self._naming, value, manager.node))
        self.storage_markers = remote.Command(
            f"{name}-storage-markers",
            connection=manager.connection,
            create=scripts.apply(lambda found: manager.privileged(found["markers"])),
            delete=scripts.apply(lambda found: manager.privileged(found["markers-delete"])),
            opts=pulumi.ResourceOptions(parent=self, depends_on=manager.ready),
        )
        for host in workers:
            self.storage_checks[host.node.name] = self._storage_check(f"{name}-worker-{host.node.name}-storage", host)
        # Once every node has read them, the markers go: they sit in folders users see.
        self.storage_checked = remote.Command(
            f"{name}-storage-checked",
            connection=manager.connection,
            create=scripts.apply(lambda found: manager.privileged(found["markers-delete"])),
            # Its script names no nonce (it removes all of the stack's markers): each check runs it again.
            triggers=[nonce],
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.storage_checks.values())),
        )

    def _storage_check(self, name: str, host: Host) -> remote.Command:
        """On ``host``: each marker the manager wrote (listed on standard input) read back."""
        script = self.storage_nonce.hex.apply(
            lambda nonce: host.privileged(storage_scripts(self._settings, self._naming, nonce, host.node)["check"])
        )
        return remote.Command(
            name,
            connection=host.connection,
            create=script,
            stdin=self.storage_markers.stdout,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*host.ready, self.storage_markers]),
        )

    def _join(self, name: str, node: Node, advertise_address: str | None, labels: dict[str, str]) -> None:
        """``node`` joined (after its storage is checked), then Ready and labelled from the manager."""
        manager, host = self._manager, self.workers[node.name]
        prefix = f"{name}-worker-{node.name}"
        after: list[pulumi.Resource] = [*host.ready, self.storage_checks[node.name], self.manager]
        if self.join_token is not None:
            # Created before the join, so deleted after the worker left: the manager then removes it.
            removal = remote.Command(
                f"{prefix}-removal",
                connection=manager.connection,
                create=manager.privileged("true"),
                delete=manager.privileged(node_removal_script(self._naming, node)),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.manager]),
            )
            after.append(removal)
        create, delete = join_scripts(self._settings, self._naming, node, advertise_address)
        request: pulumi.Output[str] | None = None
        if self.join_token is not None:
            request = pulumi.Output.secret(self.join_token.stdout)
        self.joins[node.name] = remote.Command(
            f"{prefix}-join",
            connection=host.connection,
            create=host.privileged(create),
            delete=host.privileged(delete),
            # The join request holds the token: on standard input only, a secret like its source.
            stdin=request,
            opts=pulumi.ResourceOptions(parent=self, depends_on=after),
        )
        self.nodes[node.name] = self._node_command(
            f"{prefix}-node", node, labels, self.joins[node.name].stdout, [self.joins[node.name]]
        )

    def check_registry(self, images: Images, manager_trust: remote.Command | None) -> list[remote.Command]:
        """On every node, once the images are pushed: its engine fetches each notebook image's
        manifest from the registry, with its trust and the pull login, or ``up`` fails naming the
        node and what to set. Run again whenever an image is pushed anew. Make the hub wait for them."""
        settings = self._settings
        names = sorted(images.notebook_image_names.values())
        pushed = [image.repo_digest for _, image in sorted(images.notebooks.items())]
        header = registry_auth_header(settings)
        hosts = [(self._manager, manager_trust)] + [
            (host, self.registry_trust.get(name)) for name, host in self.workers.items()
        ]
        for host, trust in hosts:
            on_manager = host is self._manager
            after: list[pulumi.Resource] = [images, *([trust] if trust else [])]
            after.append(self.manager_node if on_manager else self.nodes[host.node.name])
            name = self.pulumi_resource_name
            prefix = f"{name}-manager" if on_manager else f"{name}-worker-{host.node.name}"
            self.registry_checks[host.node.name] = remote.Command(
                f"{prefix}-registry-check",
                connection=host.connection,
                create=host.privileged(registry_check_script(settings, host.node, names)),
                # The pull login: on standard input only, a secret like its source.
                stdin=pulumi.Output.secret(header) if header else None,
                triggers=pushed,
                opts=pulumi.ResourceOptions(parent=self, depends_on=after),
            )
        return list(self.registry_checks.values())
