"""Alerts worth receiving: delivered to a real HTTP server and a real SMTP server, once per failure, resolved
when the same check or job passes again, retried with backoff, inside the sensor's time budget, no secrets."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import pytest
from aiosmtpd.controller import Controller

from dagster_project.sensors import quality_alerts
from resources import AlertingResource, WarehouseResource
from synthdata.alerts import Alert, EmailChannel, RetryPolicy, WebhookChannel, deliver_due, record_failure, record_pass
from synthdata.io.warehouse import connect
from _webserver import free_port  # a port nothing listens on


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(json.loads(body))
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    server = HTTPServer(("127.0.0.1", 0), Hook)
    server.received, server.status = [], 200
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url = f"http://127.0.0.1:{server.server_port}/services/T000/B000/XXXXSECRET"
    yield server
    server.shutdown()


class Inbox:
    def __init__(self):
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd naming)
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    inbox.port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    yield inbox
    controller.stop()


@pytest.fixture
def silent_endpoint():
    """A server that accepts connections and never answers (a dead webhook behind a load balancer)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    sock.close()


def alert(n: int = 0, key: str = "check:images:images_expectations") -> Alert:
    return Alert(alert_id=f"a{n}", kind="check_failed", message=f"check failed #{n}", asset_key="images",
                 check_name="images_expectations", run_id=f"run{n:05d}", dedup_key=key)  # fmt: skip


def test_webhook_and_email_reach_real_local_servers(webhook, smtp):
    a = alert()
    assert WebhookChannel(webhook.url).send(a, 5).detail == "delivered: HTTP 200"
    assert webhook.received[0]["text"] == "[synthdata] check failed #0" and webhook.received[0]["check_name"] == "images_expectations"
    email = EmailChannel("127.0.0.1", smtp.port, "synthdata@example.org", ("team@example.org", "oncall@example.org"))
    assert email.send(a, 5).detail == "delivered: 2 recipient(s)"
    assert b"Subject: [synthdata] check failed #0" in smtp.messages[0] and b"dedup_key: check:images" in smtp.messages[0]


def test_a_failure_alerts_once_and_its_fix_resolves_it_once(tmp_path, webhook, smtp):
    con = connect(tmp_path / "w.duckdb")
    channels = [WebhookChannel(webhook.url), EmailChannel("127.0.0.1", smtp.port, "s@example.org", ("t@example.org",))]
    assert record_failure(con, alert(1)) and not record_failure(con, alert(2)) and not record_failure(con, alert(3))
    report = deliver_due(con, channels, budget_s=10)
    assert len(report.sent) == 1 and len(webhook.received) == 1 and len(smtp.messages) == 1
    assert deliver_due(con, channels, budget_s=10).sent == []  # delivered: nothing is sent twice
    assert con.execute("SELECT occurrences, delivered FROM alerts").fetchall() == [
        (3, "webhook: delivered: HTTP 200; email: delivered: 1 recipient(s)")
    ]
    resolved = record_pass(con, alert().dedup_key, "run99999", "check images:images_expectations")
    assert resolved.message == "check images:images_expectations passes again (run run99999) after 3 failure(s)"
    assert record_pass(con, alert().dedup_key, "run99999", "again") is None  # already resolved
    deliver_due(con, channels, budget_s=10)
    assert webhook.received[-1]["text"].startswith("[synthdata] RESOLVED check images:images_expectations passes")
    assert b"RESOLVED" in smtp.messages[-1]
    assert record_failure(con, alert(4))  # failing again after the fix is a new alert
    con.close()


def test_a_dead_endpoint_is_retried_with_backoff_inside_the_time_budget(tmp_path, silent_endpoint, webhook):
    con = connect(tmp_path / "w.duckdb")
    for n in range(10):
        record_failure(con, alert(n, key=f"check:a:c{n}"))
    start = time.monotonic()
    report = deliver_due(con, [WebhookChannel(silent_endpoint)], budget_s=3, timeout_s=10, policy=RetryPolicy(base_s=1))
    assert time.monotonic() - start < 5  # 10 alerts x 10 s timeout would have been 100 s
    assert len(report.sent) >= 1 and report.deferred >= 8 and "failed: TimeoutError" in report.sent[0][1]
    attempts, later = con.execute("SELECT attempts, next_attempt_at > now()::TIMESTAMP FROM alerts WHERE alert_id = 'a0'").fetchone()
    assert attempts == 1 and later
    # The endpoint comes back: after the backoff every alert arrives exactly once.
    time.sleep(2.1)
    report = deliver_due(con, [WebhookChannel(webhook.url)], budget_s=10, policy=RetryPolicy(base_s=1))
    assert len(report.sent) == 10 and len(webhook.received) == 10
    assert con.execute("SELECT count(*) FROM alerts WHERE next_attempt_at IS NULL AND delivered = 'delivered: HTTP 200'").fetchone() == (10,)
    con.close()


def test_delivery_gives_up_after_max_attempts(tmp_path):
    con = connect(tmp_path / "w.duckdb")
    record_failure(con, alert())
    refused = f"http://127.0.0.1:{free_port()}/hook"
    for _ in range(3):
        con.execute("UPDATE alerts SET next_attempt_at = now()::TIMESTAMP - INTERVAL 1 SECOND WHERE next_attempt_at IS NOT NULL")
        deliver_due(con, [WebhookChannel(refused)], budget_s=5, policy=RetryPolicy(base_s=60, max_attempts=3))
    attempts, delivered, retry = con.execute("SELECT attempts, delivered, next_attempt_at FROM alerts").fetchone()
    assert attempts == 3 and retry is None and delivered.endswith("gave up after 3 attempts")
    assert "ConnectionRefusedError" in delivered
    con.close()


@pytest.mark.parametrize(
    "url",
    ["hooks.slack.com/services/T000/B000/XXXXSECRET", "ftp://hooks.example.org/XXXXSECRET", "http://user:XXXXSECRET@127.0.0.1:{port}/x",
     "http://127.0.0.1:notaport/XXXXSECRET", "http://[XXXXSECRET/"],
)  # fmt: skip
def test_a_bad_or_unreachable_url_never_raises_and_never_shows_the_secret(url):
    outcome = WebhookChannel(url.format(port=free_port())).send(alert(), 2)
    assert not outcome.ok and "XXXXSECRET" not in outcome.detail and "127.0.0.1" not in outcome.detail
    assert "XXXXSECRET" not in repr(WebhookChannel(url)) and "XXXXSECRET" not in repr(
        EmailChannel("h", 25, "f", ("t",), "user", "XXXXSECRET")
    )


def test_smtp_failure_names_no_credentials():
    outcome = EmailChannel("127.0.0.1", free_port(), "f@x", ("t@x",), "user", "XXXXSECRET").send(alert(), 2)
    assert outcome.detail == "failed: ConnectionRefusedError: Connection refused"


# ---------------------------------------------------------------------------------------------------------
# The sensor over real runs of a real instance
# ---------------------------------------------------------------------------------------------------------


def _toy_defs(flag_path):
    """A job whose check fails while a flag file says so, and which fails outright when the flag says "crash"."""

    @dg.asset
    def sample() -> None:
        if flag_path.read_text() == "crash":
            raise RuntimeError("worker blew up")

    @dg.asset_check(asset=sample)
    def sample_ok() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=flag_path.read_text() == "pass", description="sample is fine")

    return dg.Definitions(assets=[sample], asset_checks=[sample_ok], jobs=[dg.define_asset_job("toy_job")])


def test_the_sensor_alerts_once_per_failure_and_once_when_fixed(tmp_path, webhook, smtp):
    flag = tmp_path / "flag"
    defs = _toy_defs(flag)
    resources = {
        "warehouse": WarehouseResource(database=str(tmp_path / "warehouse.duckdb")),
        "alerting": AlertingResource(webhook_url=webhook.url, smtp_host="127.0.0.1", smtp_port=smtp.port, email_to="t@example.org"),
    }  # fmt: skip
    cursor = None

    def run_then_tick(state: str) -> None:
        nonlocal cursor
        flag.write_text(state)
        defs.resolve_job_def("toy_job").execute_in_process(instance=instance, raise_on_error=False)
        with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as ctx:
            quality_alerts(ctx)
            cursor = ctx.cursor

    with dg.instance_for_test() as instance:
        run_then_tick("fail")
        run_then_tick("fail")  # the same check failing again: no second message
        assert [m["kind"] for m in webhook.received] == ["check_failed"] and len(smtp.messages) == 1
        run_then_tick("pass")
        assert [m["kind"] for m in webhook.received] == ["check_failed", "resolved"]
        assert webhook.received[1]["text"].startswith("[synthdata] RESOLVED check sample:sample_ok passes again")
        run_then_tick("crash")
        run_then_tick("crash")
        run_then_tick("pass")
        kinds = [m["kind"] for m in webhook.received]
        assert kinds == ["check_failed", "resolved", "run_failed", "resolved"], kinds
        assert "job toy_job passes again" in webhook.received[-1]["text"] and len(smtp.messages) == 4
        con = connect(resources["warehouse"].database, read_only=True)
        rows = con.execute("SELECT kind, occurrences, resolved_at IS NOT NULL FROM alerts ORDER BY created_at").fetchall()
        con.close()
        assert rows == [("check_failed", 2, True), ("resolved", 1, False), ("run_failed", 2, True), ("resolved", 1, False)]


def test_a_dead_webhook_never_runs_the_sensor_past_its_budget(tmp_path, silent_endpoint):
    flag = tmp_path / "flag"
    flag.write_text("crash")
    defs = _toy_defs(flag)
    resources = {
        "warehouse": WarehouseResource(database=str(tmp_path / "warehouse.duckdb")),
        "alerting": AlertingResource(webhook_url=silent_endpoint, timeout_s=10, tick_budget_s=4),
    }  # fmt: skip
    with dg.instance_for_test() as instance:
        for n in range(6):  # six different jobs failing: six alerts to deliver
            job = dg.define_asset_job(f"toy_job_{n}")
            dg.Definitions(assets=defs.assets, jobs=[job]).resolve_job_def(f"toy_job_{n}").execute_in_process(
                instance=instance, raise_on_error=False
            )
        start = time.monotonic()
        with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
            result = quality_alerts(ctx)
        assert time.monotonic() - start < 15  # six alerts x 10 s would have been 60 s
        assert "6 new alert(s)" in result.skip_message and "deferred" in result.skip_message
        assert silent_endpoint.split("/hook")[0] not in result.skip_message


# ---------------------------------------------------------------------------------------------------------
# Freshness: a late or empty drop fails the check, the sensor alerts, the drop's arrival resolves it
# ---------------------------------------------------------------------------------------------------------


def test_a_late_then_empty_drop_fails_freshness_alerts_and_its_arrival_resolves(tmp_path, digits, webhook, monkeypatch):
    import datetime as dt

    from assets.freshness import expected_drop
    from dagster_project.definitions import ALL_ASSETS, FRESHNESS_CHECKS, build_resources
    from synthdata.io.landing import export_as_drops
    from synthdata.io.paths import SynthdataPaths

    assert expected_drop(dt.datetime(2026, 12, 6, 2, 59), 3) == dt.date(2026, 12, 4)  # before the deadline hour
    assert expected_drop(dt.datetime(2026, 12, 6, 3, 0), 3) == dt.date(2026, 12, 5)
    monkeypatch.setenv("SYNTHDATA_DROP_DEADLINE_HOUR", "0")  # yesterday's drop is due now
    monkeypatch.setenv("SYNTHDATA_DROP_MIN_IMAGES", "5")
    yesterday = str(dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1))
    paths = SynthdataPaths(home=tmp_path / "home", landing=tmp_path / "home" / "landing").ensure()
    resources = {**build_resources(paths), "alerting": AlertingResource(webhook_url=webhook.url)}
    check_job = dg.define_asset_job("freshness", selection=dg.AssetSelection.checks(*FRESHNESS_CHECKS))
    ingest_job = dg.define_asset_job("ingest", selection=dg.AssetSelection.assets("raw_images"), partitions_def=ALL_ASSETS[0].partitions_def)
    defs = dg.Definitions(assets=ALL_ASSETS, asset_checks=FRESHNESS_CHECKS, jobs=[check_job, ingest_job], resources=resources)
    cursor = None

    def check_then_tick() -> dg.AssetCheckEvaluation:
        nonlocal cursor
        result = defs.resolve_job_def("freshness").execute_in_process(instance=instance)
        with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as ctx:
            quality_alerts(ctx)
            cursor = ctx.cursor
        (evaluation,) = result.get_asset_check_evaluations()
        return evaluation

    with dg.instance_for_test() as instance:
        late = check_then_tick()  # a fresh home: nothing ingested at all
        assert not late.passed and late.description.startswith(f"late: the {yesterday} drop was not ingested")
        (yesterday_dir := paths.landing / yesterday).mkdir()
        defs.resolve_job_def("ingest").execute_in_process(instance=instance, partition_key=yesterday)
        empty = check_then_tick()  # the day was ingested, but the drop held nothing
        assert not empty.passed and empty.description.startswith(f"empty: the {yesterday} drop has 0 accepted image(s)")
        assert [m["kind"] for m in webhook.received] == ["check_failed"]  # late, then empty: one open problem
        images, labels, names = digits
        export_as_drops(images[:20], labels[:20], names, paths.landing, [yesterday], seed=0)
        assert any(yesterday_dir.rglob("*.png"))
        defs.resolve_job_def("ingest").execute_in_process(instance=instance, partition_key=yesterday)
        fresh = check_then_tick()
        assert fresh.passed and fresh.description.startswith(f"the {yesterday} drop is in: 20 images")
        assert [m["kind"] for m in webhook.received] == ["check_failed", "resolved"]
        assert "raw_images:raw_images_freshness" in webhook.received[0]["text"] and "late" in webhook.received[0]["text"]
