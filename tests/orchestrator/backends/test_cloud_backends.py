"""The `aws` and `azure` backends with a recording stack engine (the program runs under mocks)."""

from __future__ import annotations

import base64
import gzip
import json
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from iacrun.orchestrator.backends.aws import AWSBackend, aws_credentials_source, next_zone
from iacrun.orchestrator.backends.azure import (
    AzureBackend,
    azure_credentials_source,
    caller_permissions,
    decide_self_delete,
)
from iacrun.orchestrator.backends.failover import provision_with_failover
from iacrun.orchestrator.backends.pulumi_cloud import PLACEHOLDER_CIDR, STACK_MARK
from iacrun.orchestrator.errors import (
    BackendError,
    CapacityError,
    CredentialsError,
    MachineCheckError,
    ToolMissingError,
)
from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.models.requirements import Requirements
from iacrun.orchestrator.models.runspec import RunSpec
from iacrun.orchestrator.models.settings import AWSSettings, AzureSettings
from iacrun.orchestrator.models.taskfile import RetrySpec
from iacrun.orchestrator.offers.model import Offer
from iacrun.orchestrator.paths import home_tag, iacrun_home
from iacrun.orchestrator.registry import RunRecord
from iacrun.stacks.cloudinit import RUN_DIR
from iacrun.stacks.engine import DestroyResult
from iacrun.stacks.preview import PreviewResult, preview
from iacrun.stacks.toolchain import Plugin, required_plugin

from .conftest import offer

AWS_ENV = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"}
AZURE_ENV = {
    "ARM_CLIENT_ID": "client",
    "ARM_CLIENT_SECRET": "secret",
    "ARM_TENANT_ID": "tenant",
    "ARM_SUBSCRIPTION_ID": "11111111-1111-1111-1111-111111111111",
}


class Progress:
    def render(self) -> str:
        return "creating 3/7 resources, 12s elapsed"


class RecordingEngine:
    """Records what the backend asks; `up` runs the program under Pulumi's mocks."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.previews: list[PreviewResult] = []
        self.kwargs: list[dict[str, Any]] = []
        #: the provider plugins are there already; `installed` records what was installed
        self.installed: list[Plugin] = []

    def plugins(self) -> list[Plugin]:
        return [p for p in (required_plugin("aws"), required_plugin("azure")) if p is not None]

    def install_plugins(self, plugins: list[Plugin], **_: Any) -> None:
        self.installed += plugins

    def up(
        self,
        stack_name: str,
        program: Callable[[], None],
        config: Mapping[str, str] | None = None,
        *,
        secrets: Mapping[str, str] | None = None,
        on_progress: Callable[[Any], None] | None = None,
        timeout: float = 1800,
    ) -> dict[str, Any]:
        self.calls.append(("up", stack_name))
        self.kwargs.append({"config": config, "secrets": secrets, "timeout": timeout})
        if on_progress is not None:
            on_progress(Progress())
        result = preview(program)
        self.previews.append(result)
        return dict(result.outputs)

    def destroy(
        self,
        stack_name: str,
        program: Callable[[], None] | None = None,
        *,
        on_progress: Callable[[Any], None] | None = None,
        timeout: float = 1800,
        force: bool = False,
    ) -> DestroyResult:
        self.calls.append(("destroy", stack_name))
        return DestroyResult(existed=True)


def run_spec(tmp_path: Path, **changes: Any) -> RunSpec:
    data: dict[str, Any] = {
        "run_name": "train-1",
        "config_path": str(tmp_path / "train.dstack.yml"),
        "repo_dir": str(tmp_path),
        "working_dir": ".",
        "image": None,
        "python": "3.11",
        "commands": ["python train.py"],
        "env": {"HF_TOKEN": "hf-secret"},
        "ports": [],
        "requirements": Requirements(spot_policy="auto", max_price=2.5),
        "retry": RetrySpec(),
        "max_duration": 3600,
        "stop_duration": 15,
    }
    data.update(changes)
    return RunSpec(**data)


def record(tmp_path: Path, **changes: Any) -> RunRecord:
    local = tmp_path / "runs" / "train-1-7"
    local.mkdir(parents=True, exist_ok=True)
    return RunRecord(
        id=7,
        name="train-1",
        status="provisioning",
        spec=run_spec(tmp_path, **changes).model_dump(mode="json"),
        local_dir=str(local),
        submitted_at=time.time(),
    )


def stack() -> str:
    """The stack of `record()`'s run in the tests' iacrun home: `<run>-<id>-<home tag>`."""
    return f"train-1-7-{home_tag(iacrun_home())}"


def never() -> Any:
    raise AssertionError("the engine must not be made")


def passed(host: Host, timeout: float) -> str | None:
    """The VM's own check, passed (the stand-in tests run the real one)."""
    return None


def aws_backend(tmp_path: Path, engine: Any = None, **kwargs: Any) -> AWSBackend:
    kwargs.setdefault("environ", AWS_ENV)
    kwargs.setdefault("public_ip", lambda: "198.51.100.23")
    kwargs.setdefault("machine_check", passed)
    return AWSBackend(
        kwargs.pop("settings", AWSSettings()),
        engine=engine,
        engine_factory=never if engine is None else None,
        user_home=tmp_path / "home",
        **kwargs,
    )


#: Resource Manager's permission entries of built-in roles, as the permissions list gives them
OWNER = [{"actions": ["*"], "notActions": []}]
CONTRIBUTOR = [
    {
        "actions": ["*"],
        "notActions": [
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
            "Microsoft.Blueprint/blueprintAssignments/write",
            "Microsoft.Blueprint/blueprintAssignments/delete",
            "Microsoft.Compute/galleries/share/action",
        ],
    }
]
USER_ACCESS_ADMINISTRATOR = [
    {"actions": ["*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"], "notActions": []}
]
RBAC_ADMINISTRATOR = [
    {
        "actions": [
            "Microsoft.Authorization/roleAssignments/write",
            "Microsoft.Authorization/roleAssignments/delete",
            "*/read",
        ],
        "notActions": [],
    }
]
READER = [{"actions": ["*/read"], "notActions": []}]


def azure_backend(tmp_path: Path, engine: Any = None, **kwargs: Any) -> AzureBackend:
    kwargs.setdefault("environ", AZURE_ENV)
    kwargs.setdefault("public_ip", lambda: "198.51.100.23")
    kwargs.setdefault("rights", lambda subscription: OWNER)
    kwargs.setdefault("machine_check", passed)
    return AzureBackend(
        kwargs.pop("settings", AzureSettings()),
        engine=engine,
        engine_factory=never if engine is None else None,
        user_home=tmp_path / "home",
        **kwargs,
    )


# ---------------------------------------------------------------------------- aws


def test_aws_provision_runs_the_stack_and_returns_a_pinned_host(tmp_path: Path) -> None:
    engine = RecordingEngine()
    lines: list[str] = []
    host = aws_backend(tmp_path, engine).provision(
        record(tmp_path), offer("aws", spot=True), lines.append
    )
    assert engine.calls == [("up", stack())]
    assert host.kind == "ssh"
    assert (host.address, host.user, host.port, host.run_dir) == (
        "203.0.113.10",
        "ubuntu",
        22,
        RUN_DIR,
    )
    assert host.gpus == "0"
    assert "creating 3/7 resources, 12s elapsed" in lines
    # the key iacrun logs in with is the one the stack installs
    key = Path(str(host.identity_file))
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    result = engine.previews[0]
    public = result.one("aws:ec2/keyPair:KeyPair").inputs["publicKey"]
    assert (key.parent / "id_ed25519.pub").read_text().strip() == public
    # the host key iacrun pins is the one cloud-init installs
    user_data = result.one("aws:ec2/instance:Instance").inputs["userDataBase64"]
    document = yaml.safe_load(gzip.decompress(base64.b64decode(user_data)))
    assert document["ssh_keys"]["ed25519_public"].startswith(str(host.host_key))
    # SSH from this machine's address only; spot with the run's max_price
    ingress = result.one("aws:ec2/securityGroup:SecurityGroup").inputs["ingress"]
    assert ingress[0]["cidrBlocks"] == ["198.51.100.23/32"]
    market = result.one("aws:ec2/instance:Instance").inputs["instanceMarketOptions"]
    assert market["spotOptions"]["maxPrice"] == "2.5"
    # the job carries the run's commands (in job.sh, once), not its env values
    written = {f["path"]: f["content"] for f in document["write_files"]}
    assert "python train.py" in written[f"{RUN_DIR}/job.sh"]
    assert "python train.py" not in written[f"{RUN_DIR}/job.json"]
    assert all("hf-secret" not in content for content in written.values())


class ZonalEngine(RecordingEngine):
    """EC2 without capacity in some zones: `up` fails there as the engine reports it."""

    def __init__(self, full: set[tuple[str, str]]) -> None:
        super().__init__()
        self.full = full
        self.zones: list[tuple[str, str | None]] = []

    def up(
        self,
        stack_name: str,
        program: Callable[[], None],
        config: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        outputs = super().up(stack_name, program, config, **kwargs)
        region = self.previews[-1].one("pulumi:providers:aws").inputs["region"]
        zone = outputs.get("zone")
        self.zones.append((region, zone))
        if (region, zone) in self.full:
            raise CapacityError(f"InsufficientInstanceCapacity in {zone}")
        return outputs


def test_aws_tries_the_next_zone_on_no_capacity(tmp_path: Path) -> None:
    engine = ZonalEngine({("us-east-1", "zone-a")})
    lines: list[str] = []
    host = aws_backend(tmp_path, engine).provision(record(tmp_path), offer("aws"), lines.append)
    assert engine.zones == [("us-east-1", "zone-a"), ("us-east-1", "zone-b")]
    assert host.address == "203.0.113.10"
    vm = engine.previews[-1].one("aws:ec2/instance:Instance").inputs
    assert (vm["availabilityZone"], vm["subnetId"]) == ("zone-b", "subnet-b")
    assert any(
        "no capacity for g5.2xlarge in zone-a" in line and "trying zone-b" in line for line in lines
    )


def test_aws_every_zone_full_is_no_capacity_for_the_offer(tmp_path: Path) -> None:
    engine = ZonalEngine({("us-east-1", "zone-a"), ("us-east-1", "zone-b")})
    with pytest.raises(CapacityError, match="zone-b"):
        aws_backend(tmp_path, engine).provision(record(tmp_path), offer("aws"), lambda _: None)
    assert engine.zones == [("us-east-1", "zone-a"), ("us-east-1", "zone-b")]


def test_aws_a_type_offered_in_no_zone_is_no_capacity(tmp_path: Path) -> None:
    class NowhereEngine(RecordingEngine):
        def up(self, stack_name: str, program: Callable[[], None], *a: Any, **k: Any) -> Any:
            self.calls.append(("up", stack_name))
            result = preview(
                program,
                answers=lambda token, args: (
                    {"id": "o", "locations": []} if "InstanceTypeOfferings" in token else None
                ),
            )
            self.previews.append(result)
            return dict(result.outputs)

    engine = NowhereEngine()
    with pytest.raises(CapacityError, match=r"g5\.2xlarge is not offered in any availability zone"):
        aws_backend(tmp_path, engine).provision(record(tmp_path), offer("aws"), lambda _: None)
    assert engine.previews[0].cloud_resources == []


def test_aws_next_zone_before_next_region(tmp_path: Path) -> None:
    engine = ZonalEngine({("us-east-1", "zone-a"), ("us-east-1", "zone-b")})
    backend = aws_backend(tmp_path, engine)
    offers = [offer("aws", region="us-east-1"), offer("aws", region="us-west-2")]
    offers[1] = offers[1].model_copy(update={"price": 1.3})
    chosen, _ = provision_with_failover(
        {"aws": backend}, offers, record(tmp_path), None, lambda _: None
    )
    assert chosen.region == "us-west-2"
    assert engine.zones == [
        ("us-east-1", "zone-a"),
        ("us-east-1", "zone-b"),
        ("us-west-2", "zone-a"),
    ]


@pytest.mark.parametrize(
    ("zone", "candidates", "avoided", "expected"),
    [
        ("a", ("a", "b", "c"), [], ("a", "b")),
        ("b", ("a", "b", "c"), ["a"], ("b", "c")),
        ("c", ("a", "b", "c"), ["a", "b"], None),
        (None, (), [], None),
    ],
)
def test_next_zone_as_data(
    zone: str | None,
    candidates: tuple[str, ...],
    avoided: list[str],
    expected: tuple[str, str] | None,
) -> None:
    from iacrun.stacks.aws import ZoneChoice

    assert next_zone(ZoneChoice(zone, None, candidates), avoided) == expected


def test_aws_configured_cidrs_and_profile(tmp_path: Path) -> None:
    engine = RecordingEngine()
    home = tmp_path / "home" / ".aws"
    home.mkdir(parents=True)
    (home / "credentials").write_text(
        "[research]\naws_access_key_id = A\naws_secret_access_key = B\n"
    )
    settings = AWSSettings(profile="research", ssh_cidrs=["10.20.0.0/16"])

    def no_lookup() -> str:
        raise AssertionError("configured CIDRs need no lookup")

    backend = aws_backend(tmp_path, engine, settings=settings, environ={}, public_ip=no_lookup)
    backend.provision(record(tmp_path), offer("aws"), lambda _: None)
    result = engine.previews[0]
    assert result.one("pulumi:providers:aws").inputs["profile"] == "research"
    ingress = result.one("aws:ec2/securityGroup:SecurityGroup").inputs["ingress"]
    assert ingress[0]["cidrBlocks"] == ["10.20.0.0/16"]


def test_a_gpu_machine_that_fails_its_check_is_destroyed_at_once(tmp_path: Path) -> None:
    engine = RecordingEngine()
    seen: list[float] = []

    def broken(host: Host, timeout: float) -> str | None:
        seen.append(timeout)
        return "gpu check failed: nvidia-smi: NVIDIA-SMI has failed"

    backend = aws_backend(tmp_path, engine, machine_check=broken)
    with pytest.raises(MachineCheckError, match="gpu check failed: nvidia-smi") as caught:
        backend.provision(record(tmp_path), offer("aws"), lambda _: None)
    assert isinstance(caught.value, CapacityError)  # failover moves on to the next offer
    assert engine.calls[1:] == [("destroy", stack())]
    assert seen == [300 + 600]  # the DLAMI's driver wait, plus boot


def test_a_cpu_machine_is_not_waited_for(tmp_path: Path) -> None:
    def never_called(host: Host, timeout: float) -> str | None:
        raise AssertionError("a CPU machine has no GPU check to wait for")

    backend = aws_backend(tmp_path, RecordingEngine(), machine_check=never_called)
    backend.provision(record(tmp_path), offer("aws", gpu=False), lambda _: None)


def test_aws_terminate_destroys_the_stack_and_may_repeat(tmp_path: Path) -> None:
    engine = RecordingEngine()
    backend = aws_backend(tmp_path, engine)
    backend.provision(record(tmp_path), offer("aws"), lambda _: None)
    backend.terminate(record(tmp_path))
    backend.terminate(record(tmp_path))
    assert engine.calls[1:] == [("destroy", stack()), ("destroy", stack())]


def test_terminate_before_any_update_needs_nothing(tmp_path: Path) -> None:
    """A run that failed before its stack's first update (no credentials, no pulumi, user data
    too big) created nothing: tearing it down neither needs credentials nor calls the engine."""
    engine = RecordingEngine()
    aws_backend(tmp_path, engine, environ={}).terminate(record(tmp_path))
    assert engine.calls == []


def test_aws_without_credentials_says_what_to_set(tmp_path: Path) -> None:
    engine = RecordingEngine()
    backend = aws_backend(tmp_path, engine, environ={})
    with pytest.raises(CredentialsError) as caught:
        backend.provision(record(tmp_path), offer("aws"), lambda _: None)
    message = str(caught.value)
    assert "\n" not in message
    assert "AWS_PROFILE" in message and "AWS_ACCESS_KEY_ID" in message
    assert engine.calls == []
    backend.terminate(record(tmp_path))  # nothing was created: nothing to give back
    (Path(record(tmp_path).local_dir) / STACK_MARK).write_text("train-1-7")
    with pytest.raises(CredentialsError):  # a stack may exist: destroying it needs credentials
        backend.terminate(record(tmp_path))


def test_without_pulumi_up_fails_with_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    backend = AWSBackend(environ=AWS_ENV, home=tmp_path / "iacrun", public_ip=lambda: "1.2.3.4")
    with pytest.raises(ToolMissingError, match=r"get\.pulumi\.com"):
        backend.provision(record(tmp_path), offer("aws"), lambda _: None)


@pytest.mark.parametrize(
    ("files", "environ", "found"),
    [
        ({}, AWS_ENV, "AWS_ACCESS_KEY_ID"),
        ({}, {"AWS_ACCESS_KEY_ID": "only-half"}, None),
        ({"credentials": "[default]\naws_access_key_id = A\n"}, {}, "profile default"),
        ({"config": "[profile work]\nsso_session = corp\n"}, {"AWS_PROFILE": "work"}, "work"),
        ({"config": "[default]\ncredential_process = /bin/creds\n"}, {}, "profile default"),
        ({}, {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/x"}, "container"),
        ({"credentials": "[other]\naws_access_key_id = A\n"}, {}, None),
    ],
)
def test_aws_credentials_are_found_where_the_cli_looks(
    tmp_path: Path, files: dict[str, str], environ: dict[str, str], found: str | None
) -> None:
    aws_dir = tmp_path / ".aws"
    aws_dir.mkdir()
    for name, text in files.items():
        (aws_dir / name).write_text(text)
    source = aws_credentials_source(environ, tmp_path, vendor_file=tmp_path / "no-vendor")
    if found is None:
        assert source is None
    else:
        assert source is not None and found in source


def test_a_named_aws_profile_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="AWS profile 'prod' is defined neither"):
        aws_credentials_source({"AWS_PROFILE": "prod"}, tmp_path)


def test_on_ec2_the_instance_role_counts(tmp_path: Path) -> None:
    vendor = tmp_path / "sys_vendor"
    vendor.write_text("Amazon EC2\n")
    assert aws_credentials_source({}, tmp_path, vendor_file=vendor) == "the EC2 instance role"


# ---------------------------------------------------------------------------- azure


def test_azure_provision_uses_an_rsa_key_and_the_subscription(tmp_path: Path) -> None:
    engine = RecordingEngine()
    host = azure_backend(tmp_path, engine).provision(
        record(tmp_path), offer("azure"), lambda _: None
    )
    assert engine.calls == [("up", stack())]
    assert (host.address, host.user, host.run_dir) == ("203.0.113.10", "ubuntu", RUN_DIR)
    key = Path(str(host.identity_file))
    assert key.name == "id_rsa" and stat.S_IMODE(key.stat().st_mode) == 0o600
    result = engine.previews[0]
    vm = result.one("azure-native:compute:VirtualMachine").inputs
    (public,) = vm["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"]
    assert public["keyData"].startswith("ssh-rsa ")
    assert (key.parent / "id_rsa.pub").read_text().strip() == public["keyData"]
    provider = result.one("pulumi:providers:azure-native").inputs
    assert provider["subscriptionId"] == AZURE_ENV["ARM_SUBSCRIPTION_ID"]
    assert result.one("azure-native:resources:ResourceGroup").inputs["resourceGroupName"] == (
        f"iacrun-{stack()}"
    )


def test_azure_self_delete_can_be_turned_off(tmp_path: Path) -> None:
    engine = RecordingEngine()
    backend = azure_backend(tmp_path, engine, self_delete=False)
    backend.provision(record(tmp_path), offer("azure"), lambda _: None)
    assert engine.previews[0].of_type("azure-native:authorization:RoleAssignment") == []


@pytest.mark.parametrize(
    ("permissions", "enabled", "says"),
    [
        (OWNER, True, None),
        (USER_ACCESS_ADMINISTRATOR, True, None),
        (RBAC_ADMINISTRATOR, True, None),
        (CONTRIBUTOR + READER, False, "may not assign roles"),
        (READER, False, "may not assign roles"),
        (None, False, "could not check whether you may assign roles"),
    ],
)
def test_azure_self_delete_decision_as_data(
    permissions: list[dict[str, Any]] | None, enabled: bool, says: str | None
) -> None:
    got, note = decide_self_delete(True, permissions)
    assert got is enabled
    if says is None:
        assert note is None
    else:
        assert note is not None and says in note and "power it off" in note
    assert decide_self_delete(False, OWNER) == (False, None)  # turned off: nothing to say


def test_a_contributor_runs_without_the_vm_side_delete_and_is_told_once(tmp_path: Path) -> None:
    engine = RecordingEngine()
    asked: list[str | None] = []

    def contributor(subscription: str | None) -> list[dict[str, Any]]:
        asked.append(subscription)
        return CONTRIBUTOR

    backend = azure_backend(tmp_path, engine, rights=contributor)
    lines: list[str] = []
    backend.provision(record(tmp_path), offer("azure"), lines.append)
    backend.provision(record(tmp_path), offer("azure", region="westeurope"), lines.append)
    assert asked == [AZURE_ENV["ARM_SUBSCRIPTION_ID"]]  # checked once
    notes = [line for line in lines if "may not assign roles" in line]
    assert len(notes) == 1
    for result in engine.previews:
        vm = result.one("azure-native:compute:VirtualMachine").inputs
        assert "identity" not in vm
        assert result.of_type("azure-native:authorization:RoleAssignment") == []


def test_an_owner_gets_the_vm_side_delete(tmp_path: Path) -> None:
    engine = RecordingEngine()
    lines: list[str] = []
    azure_backend(tmp_path, engine).provision(record(tmp_path), offer("azure"), lines.append)
    (assignment,) = engine.previews[0].of_type("azure-native:authorization:RoleAssignment")
    assert assignment.inputs["roleDefinitionId"].endswith("b24988ac-6180-42a0-ab88-20f7382dd24c")
    assert not any("assign roles" in line for line in lines)


def test_preflight_checks_the_role_rights(tmp_path: Path) -> None:
    asked: list[str | None] = []

    def rights(subscription: str | None) -> list[dict[str, Any]]:
        asked.append(subscription)
        return READER

    backend = azure_backend(tmp_path, RecordingEngine(), rights=rights)
    backend.preflight()
    assert asked == [AZURE_ENV["ARM_SUBSCRIPTION_ID"]]
    assert backend.self_delete_decision()[0] is False


def test_the_az_cli_reads_the_callers_permissions(tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def az(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        seen.append(argv)
        if argv[1:3] == ["account", "show"]:
            return subprocess.CompletedProcess(argv, 0, "sub-9\n", "")
        return subprocess.CompletedProcess(argv, 0, json.dumps({"value": CONTRIBUTOR}), "")

    got = caller_permissions({}, None, which=lambda _: "/usr/bin/az", run=az)
    assert got == CONTRIBUTOR
    assert seen[1][:4] == ["/usr/bin/az", "rest", "--method", "get"]
    assert seen[1][5] == (
        "https://management.azure.com/subscriptions/sub-9/providers/"
        "Microsoft.Authorization/permissions?api-version=2022-04-01"
    )
    assert caller_permissions({}, "s", which=lambda _: None) is None  # no az: unknown

    def refused(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 1, "", "AuthorizationFailed")

    assert caller_permissions({}, "s", which=lambda _: "/usr/bin/az", run=refused) is None


def test_a_service_principal_reads_its_permissions_with_its_secret() -> None:
    requests: list[tuple[str, str, str]] = []

    class Entra(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            requests.append(("POST", self.path, body))
            self._json({"access_token": "sp-token"})

        def do_GET(self) -> None:
            requests.append(("GET", self.path, self.headers.get("Authorization", "")))
            self._json({"value": OWNER})

        def _json(self, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Entra)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        got = caller_permissions(AZURE_ENV, "sub-1", login_url=url, arm_url=url)
    finally:
        server.shutdown()
        server.server_close()
    assert got == OWNER
    (post, get) = requests
    assert post[1] == "/tenant/oauth2/v2.0/token"
    assert "grant_type=client_credentials" in post[2] and "client_id=client" in post[2]
    assert get[1] == (
        "/subscriptions/sub-1/providers/Microsoft.Authorization/permissions?api-version=2022-04-01"
    )
    assert get[2] == "Bearer sp-token"


def test_azure_without_credentials_says_what_to_set(tmp_path: Path) -> None:
    backend = azure_backend(tmp_path, RecordingEngine(), environ={})
    with pytest.raises(CredentialsError, match=r"run `az login`, or set ARM_CLIENT_ID"):
        backend.provision(record(tmp_path), offer("azure"), lambda _: None)


def _az_login(home: Path) -> None:
    azure_dir = home / ".azure"
    azure_dir.mkdir(parents=True)
    (azure_dir / "azureProfile.json").write_text(
        '\ufeff{"subscriptions": [{"id": "s", "isDefault": true}]}', encoding="utf-8"
    )


def test_azure_cli_login_needs_the_az_cli(tmp_path: Path) -> None:
    _az_login(tmp_path)
    found = azure_credentials_source({}, tmp_path, which=lambda _: "/usr/bin/az")
    assert found is not None and found.startswith("Azure CLI login")
    with pytest.raises(CredentialsError, match="no `az` on PATH"):
        azure_credentials_source({}, tmp_path, which=lambda _: None)


def test_an_azure_service_principal_needs_its_tenant(tmp_path: Path) -> None:
    environ = {"ARM_CLIENT_ID": "c", "ARM_CLIENT_SECRET": "s"}
    with pytest.raises(CredentialsError, match="set ARM_TENANT_ID"):
        azure_credentials_source(environ, tmp_path)
    assert azure_credentials_source({**environ, "AZURE_TENANT_ID": "t"}, tmp_path)
    assert azure_credentials_source({"ARM_USE_MSI": "true"}, tmp_path)
    assert azure_credentials_source({}, tmp_path) is None


# ---------------------------------------------------------------------------- dry run


def test_a_dry_run_needs_neither_credentials_nor_an_engine(tmp_path: Path) -> None:
    backend = aws_backend(tmp_path, environ={})
    plan = backend.dry_run(run_spec(tmp_path), offer("aws", spot=True))
    types = [r.type for r in plan.resources]
    assert types.count("aws:ec2/instance:Instance") == 1
    text = plan.render()
    tag = home_tag(iacrun_home())
    assert f"stack train-1-<id>-{tag} on aws us-east-1: g5.2xlarge (spot, $1.2/h)" in text
    assert "aws:ec2/securityGroup:SecurityGroup" in text
    assert "SSH (port 22) open to 198.51.100.23/32 only" in text
    assert "network: the default VPC of us-east-1" in text
    assert f"cloud-init: {plan.user_data_bytes} of 16384 bytes" in text


def test_a_dry_run_shows_when_the_public_address_is_unknown(tmp_path: Path) -> None:
    def offline() -> str:
        raise BackendError("could not find this machine's public address (offline)")

    plan = azure_backend(tmp_path, environ={}, public_ip=offline).dry_run(
        run_spec(tmp_path), offer("azure")
    )
    assert plan.spec.ssh_cidrs == [PLACEHOLDER_CIDR]
    text = plan.render()
    assert "could not find this machine's public address" in text
    assert "azure-native:compute:VirtualMachine" in text
    tag = home_tag(iacrun_home())
    # an A10 size: NVIDIA's GRID driver through Azure's extension, not the datacenter HPC image
    assert (
        f"resource group iacrun-train-1-<id>-{tag}; image "
        "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest "
        "(Canonical Ubuntu 22.04 + NVIDIA GPU Driver Extension (GRID driver))" in text
    )
    assert "GPU driver: NVIDIA GRID, installed at first boot" in text
    assert "azure-native:compute:VirtualMachineExtension" in text
    assert "the built-in Contributor role on this resource group only" in text


class ListCatalog:
    def __init__(self, offers: list[Offer]) -> None:
        self.listed = offers

    def offers(self, requirements: Requirements) -> list[Offer]:
        return list(self.listed)


def test_offers_come_from_the_given_catalog(tmp_path: Path) -> None:
    listed = [offer("aws"), offer("azure")]
    backend = aws_backend(tmp_path, catalog=ListCatalog(listed))
    assert backend.offers(Requirements()) == [listed[0]]
    assert backend.shortfall(Requirements()) is None


def test_by_default_offers_come_from_the_shipped_catalog_in_the_configured_regions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IACRUN_HOME", str(tmp_path / "iacrun"))  # no refreshed catalog
    backend = aws_backend(tmp_path, settings=AWSSettings(regions=["us-east-1"]))
    offers = backend.offers(Requirements())
    assert offers and {o.region for o in offers} == {"us-east-1"}
    assert {o.backend for o in offers} == {"aws"}
