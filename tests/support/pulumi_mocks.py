"""Run the real program under Pulumi's own mocks and record what it registers.

``pulumi.runtime.set_mocks`` is how Pulumi documents unit testing: no engine, no
providers; each resource registration reaches a mock monitor. This module's monitor
records every registration (type, name, inputs, which inputs are secret, parent,
explicit dependencies, provider, aliases) so tests can assert on them, and hands back
deterministic outputs for the few resources whose outputs the program consumes.

URNs are made as the engine makes them (the parent's whole type chain, the root stack left
out), not as the stock mock monitor does, so they are those a real stack's state holds and
aliases can be checked against them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

SECRET_SIG = rpc._special_secret_sig  # the marker Pulumi's wire format puts on secret values
MOCK_PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nMOCK-{name}\n-----END PRIVATE KEY-----\n"
#: The image id pulumi-docker reports as a local image's repoDigest.
MOCK_IMAGE_ID = "sha256:mock-{name}"
MOCK_CERT = "-----BEGIN CERTIFICATE-----\nMOCK-{name}\n-----END CERTIFICATE-----\n"
ROOT_STACK_TYPE = "pulumi:pulumi:Stack"


def engine_urn(stack: str, project: str, parent: str, type_: str, name: str) -> str:
    """The URN the engine gives ``name`` of ``type_`` under the resource ``parent`` (a URN, or "").

    Like the engine's ``resource.NewURN``: the type is qualified by the parent's whole type chain,
    except under the root stack. The stock mock keeps only the parent's last type, and the
    stack's (pulumi/pulumi#8637), so its URNs are not a real state's below the first level.
    """
    qualified = type_
    if parent:
        parent_type = parent.split("::")[2]
        if parent_type != ROOT_STACK_TYPE:
            qualified = f"{parent_type}${type_}"
    return f"urn:pulumi:{stack}::{project}::{qualified}::{name}"


@dataclass
class Registration:
    """One resource as the program registered it."""

    urn: str
    type: str
    name: str
    inputs: dict[str, Any]
    secret_inputs: set[str]
    parent: str
    dependencies: list[str]
    provider: str
    custom: bool
    #: Full URNs of the aliases it declared (resolved as the engine resolves alias specs).
    aliases: list[str] = field(default_factory=list)
    #: Outputs the program asked the engine to keep secret.
    additional_secret_outputs: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.urn


@dataclass
class ProgramRun:
    """What one evaluation of the program declared."""

    registrations: list[Registration]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    lab: Any = None
    by_urn: dict[str, Registration] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_urn = {registration.urn: registration for registration in self.registrations}

    def of_type(self, type_token: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_token]

    def named(self, name: str) -> Registration:
        matches = [r for r in self.registrations if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}: {[str(r) for r in self.registrations]}")
        return matches[0]

    def ancestors(self, registration: Registration) -> list[str]:
        chain = []
        parent = registration.parent
        while parent in self.by_urn:
            chain.append(parent)
            parent = self.by_urn[parent].parent
        return chain

    def depends_on(self, registration: Registration, other: Registration) -> bool:
        """True when ``registration`` waits for ``other``, directly or transitively."""
        seen: set[str] = set()
        pending = list(registration.dependencies)
        while pending:
            urn = pending.pop()
            if urn == other.urn:
                return True
            if urn not in seen and urn in self.by_urn:
                seen.add(urn)
                pending.extend(self.by_urn[urn].dependencies)
        return False


def _unwrap(value: Any) -> Any:
    """``value`` with Pulumi's secret wrappers replaced by what they hold."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == SECRET_SIG:
            return _unwrap(value["value"])
        return {key: _unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unwrap(item) for item in value]
    return value


def _secret_paths(value: Any, path: str = "") -> set[str]:
    """Dotted paths of the values marked secret in a wire-format struct."""
    found: set[str] = set()
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == SECRET_SIG:
            return {path}
        for key, item in value.items():
            found |= _secret_paths(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found |= _secret_paths(item, f"{path}[{index}]")
    return found


class ProgramFailed(Exception):
    """The program raised; ``registrations`` is what it had registered by then."""

    def __init__(self, error: Exception, registrations: list[Registration]) -> None:
        super().__init__(str(error))
        self.error = error
        self.registrations = registrations


def _mock_repo_digest(name: str, inputs: dict[str, Any]) -> str:
    """What pulumi-docker reports as an image's repoDigest: a pushed image's ``<repository>@sha256:...``,
    a local image's id."""
    if inputs.get("skipPush") is False:
        repository = str(inputs["imageName"]).rpartition(":")[0]
        return f"{repository}@sha256:{hashlib.sha256(name.encode()).hexdigest()}"
    return MOCK_IMAGE_ID.format(name=name)


class LabMocks(pulumi.runtime.Mocks):
    """Deterministic provider outputs for what the program reads back."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: dict[tuple[str, str], dict[str, Any]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.inputs[(args.typ, args.name)] = dict(args.inputs)
        outputs = _unwrap(dict(args.inputs))
        if args.typ == "docker:index/image:Image":
            outputs |= {"repo_digest": _mock_repo_digest(args.name, outputs)}
        elif args.typ == "random:index/randomBytes:RandomBytes":
            outputs |= {"hex": f"{args.name}-hex".encode().hex()[:64].ljust(64, "0"), "base64": "bW9jaw=="}
        elif args.typ == "tls:index/privateKey:PrivateKey":
            outputs |= {"private_key_pem": MOCK_PRIVATE_KEY.format(name=args.name), "public_key_pem": "PUBLIC"}
        elif args.typ in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
            outputs |= {"cert_pem": MOCK_CERT.format(name=args.name)}
        elif args.typ == "tls:index/certRequest:CertRequest":
            outputs |= {"cert_request_pem": f"CSR-{args.name}"}
        elif args.typ == "command:remote:Command":
            outputs |= {"stdout": "", "stderr": ""}
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The stock mock monitor, recording each registration request as it passes."""

    def __init__(self, mocks: LabMocks) -> None:
        super().__init__(mocks)
        self.lab_mocks = mocks
        self.registrations: list[Registration] = []

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        return engine_urn(pulumi.get_stack(), pulumi.get_project(), parent, type_, name)

    def alias_urns(self, request: Any) -> list[str]:
        """The request's aliases as full URNs: an alias spec's unset parts default to the resource's own."""
        urns = list(request.aliasURNs)  # SDKs that compute URNs themselves send these
        for alias in request.aliases:
            if alias.WhichOneof("alias") == "urn":
                urns.append(alias.urn)
                continue
            spec = alias.spec
            # As the engine reads a spec: an empty parentUrn (what the SDK sends for an alias
            # without parent) means the resource's current parent.
            parent = "" if spec.noParent else spec.parentUrn or request.parent
            urns.append(
                engine_urn(
                    spec.stack or pulumi.get_stack(),
                    spec.project or pulumi.get_project(),
                    parent,
                    spec.type or request.type,
                    spec.name or request.name,
                )
            )
        return urns

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            raw = self.lab_mocks.inputs.get((request.type, request.name), {})
            self.registrations.append(
                Registration(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    inputs=_unwrap(raw),
                    secret_inputs=_secret_paths(raw),
                    parent=request.parent,
                    dependencies=list(request.dependencies),
                    provider=request.provider,
                    custom=request.custom,
                    aliases=self.alias_urns(request),
                    additional_secret_outputs=list(request.additionalSecretOutputs),
                )
            )
        return response


def start_mocked_stack(
    mocks: pulumi.runtime.Mocks,
    monitor: RecordingMonitor,
    config: dict[str, Any],
    secret_keys: list[str] | None,
    stack: str,
    preview: bool = False,
) -> None:
    """Point Pulumi's runtime at ``mocks`` for ``stack``, with ``config`` (keys without ``juvini:``)."""
    # Pulumi's runtime uses the main thread's current event loop; an earlier asyncio.run()
    # (in another test) leaves none set.
    asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.set_mocks(mocks, project="juvini", stack=stack, preview=preview, monitor=monitor)
    wire = {f"juvini:{key}": value if isinstance(value, str) else json.dumps(value) for key, value in config.items()}
    pulumi.runtime.set_all_config(wire, [f"juvini:{key}" for key in secret_keys or []])


def evaluate_stack(declare: Callable[[], Any]) -> dict[str, Any]:
    """Run ``declare`` to completion; return its result and the stack outputs, with which are secret."""
    result: dict[str, Any] = {}

    @pulumi.runtime.test
    def evaluate() -> pulumi.Output[Any]:
        result["declared"] = declare()
        exported = pulumi.runtime.get_root_resource().outputs  # type: ignore[union-attr]
        names = sorted(exported)

        async def secrecy() -> list[bool]:
            return [await pulumi.Output.from_input(exported[name]).is_secret() for name in names]

        def collect(args: list[Any]) -> None:
            values, flags = args
            result["outputs"] = dict(zip(names, values, strict=True))
            result["secret_outputs"] = {name for name, flag in zip(names, flags, strict=True) if flag}

        values = pulumi.Output.all(*[pulumi.Output.unsecret(pulumi.Output.from_input(exported[n])) for n in names])
        flags: pulumi.Output[list[bool]] = pulumi.Output.from_input(secrecy())
        return pulumi.Output.all(values, flags).apply(collect)

    try:
        evaluate()
    finally:
        pulumi.runtime.set_all_config({}, [])
    return result


def run_program(
    config: dict[str, Any],
    secret_keys: list[str] | None = None,
    stack: str = "dev",
    preview: bool = False,
) -> ProgramRun:
    """Evaluate ``__main__``'s program for ``stack`` with ``config`` (keys without ``juvini:``)."""
    from infra.program import main

    mocks = LabMocks()
    monitor = RecordingMonitor(mocks)
    start_mocked_stack(mocks, monitor, config, secret_keys, stack, preview)
    try:
        result = evaluate_stack(main)
    except Exception as error:
        raise ProgramFailed(error, monitor.registrations) from error
    return ProgramRun(
        registrations=monitor.registrations,
        outputs=result.get("outputs", {}),
        secret_outputs=result.get("secret_outputs", set()),
        lab=result.get("declared"),
    )
