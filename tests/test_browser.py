"""End-to-end: the real Streamlit app and worker, driven by Debian's Chromium via Playwright.

One app + worker pair serves the whole module (a migrated, demo-seeded SQLite file); every test
uses fresh browser contexts, so the only shared state is the database. Never runs
``playwright install``: the browser is /usr/bin/chromium or the module is skipped.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from core.errors import ValidationError
from core.seed import DemoLogin, seed_demo
from core.services import Services
from db.engine import Database
from db.migrate import upgrade
from pages.trading_parts import rupees
from tests.conftest import TEST_CLIENT, TEST_SECRET, make_settings
from tests.support.fake_bot_api import DEFAULT_TOKEN as BOT_TOKEN

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
REPO_ROOT = Path(__file__).resolve().parent.parent
COOKIE_NAME = "sher_login"
WAIT_MS = 20_000

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); browser tests need it",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect
# Every check waits as long as a page may take on a loaded machine (the default is 5 s).
expect.set_options(timeout=WAIT_MS)


@dataclass
class App:
    """The running desk: its URL, the demo logins and the processes behind it."""

    url: str
    logins: dict[str, DemoLogin]
    app: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    log_dir: Path
    db_url: str

    def logs(self) -> str:
        """Return the tail of both processes' output, for assertion messages."""
        parts = []
        for name in ("app", "worker"):
            text = (self.log_dir / f"{name}.log").read_text(errors="replace")
            parts.append(f"--- {name} ---\n{text[-3000:]}")
        return "\n".join(parts)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:  # noqa: S310
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"streamlit did not answer {url}/_stcore/health within {timeout}s")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then kill after a grace period; return the exit code.

    The grace is long: a worker stopped while it trains its first model exits cleanly once
    the training ends, which takes half a minute on a loaded machine.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(timeout=10)


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """Migrate and seed a SQLite desk, then run the real app and worker against it."""
    tmp = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{tmp / 'sher.db'}"
    upgrade(url)
    services = Services(Database(url), make_settings(url))
    logins = {login.username: login for login in seed_demo(services)}
    services.marketdata.load_sample()  # what make run does on first start
    services.db.dispose()

    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": TEST_SECRET, "BCRYPT_ROUNDS": "4",
           "PYTHONUNBUFFERED": "1"}
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with (tmp / "app.log").open("wb") as app_log, (tmp / "worker.log").open("wb") as worker_log:
        worker = subprocess.Popen([sys.executable, "-m", "jobs.worker"], cwd=REPO_ROOT, env=env,
                                  stdout=worker_log, stderr=subprocess.STDOUT)
        app = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py",
             "--server.address", "127.0.0.1", "--server.port", str(port),
             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=REPO_ROOT, env=env, stdout=app_log, stderr=subprocess.STDOUT)
    running = App(base, logins, app, worker, tmp, url)
    try:
        _wait_healthy(base, app)
        yield running
    finally:
        _stop(app)
        worker_code = _stop(worker)
    assert worker_code == 0, f"worker exited {worker_code}\n{running.logs()}"


@pytest.fixture(scope="module")
def browser(desk: App) -> Iterator[sync_api.Browser]:
    """One headless Chromium for the module."""
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: sync_api.Browser) -> Iterator[sync_api.BrowserContext]:
    """A fresh browser context (no cookies) per test."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield ctx
    ctx.close()


def _wait_idle(page: sync_api.Page) -> None:
    """Wait until Streamlit has finished running the script (and the rerun the cookie
    component triggers when it mounts): input typed while a run is in flight can be lost."""
    page.locator("iframe").first.wait_for(state="attached", timeout=WAIT_MS)
    for _ in range(2):
        expect(page.get_by_test_id("stStatusWidget")).to_be_hidden(timeout=WAIT_MS)
        page.wait_for_timeout(300)


def _login_form_visible(page: sync_api.Page) -> None:
    expect(page.get_by_role("button", name="Login")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_role("textbox", name="Username")).to_be_visible(timeout=WAIT_MS)
    _wait_idle(page)


def _submit_login(page: sync_api.Page, username: str, password: str) -> None:
    _login_form_visible(page)
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Username").press("Tab")
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("textbox", name="Password").press("Tab")
    page.get_by_role("button", name="Login").click()


def _login(page: sync_api.Page, desk: App, username: str) -> None:
    page.goto(desk.url)
    _submit_login(page, username, desk.logins[username].password)
    _dashboard_visible(page)


def _dashboard_visible(page: sync_api.Page) -> None:
    expect(page.get_by_role("heading", name="Dashboard · Sharma family")).to_be_visible(
        timeout=WAIT_MS)


def _nav(page: sync_api.Page) -> sync_api.Locator:
    return page.get_by_test_id("stSidebarNav")


def _open(context: sync_api.BrowserContext, desk: App, username: str,
          title: str) -> sync_api.Page:
    """Log ``username`` in and open the page ``title`` from the navigation."""
    page = context.new_page()
    _login(page, desk, username)
    _nav(page).get_by_text(title, exact=True).click()
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=WAIT_MS)
    return page


def _session_cookie(ctx: sync_api.BrowserContext) -> dict | None:
    return next((c for c in ctx.cookies() if c["name"] == COOKIE_NAME), None)


def _wait_for_cookie(ctx: sync_api.BrowserContext, seconds: float = 5.0) -> dict | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cookie = _session_cookie(ctx)
        if cookie is not None:
            return cookie
        time.sleep(0.1)
    return None


def test_admin_sees_dashboard_worker_admin_pages_and_disclaimer(
        desk: App, context: sync_api.BrowserContext) -> None:
    page = context.new_page()
    _login(page, desk, "rahul")
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("worker up, last beat")).to_be_visible(timeout=WAIT_MS)
    expect(_nav(page).get_by_text("Users", exact=True)).to_be_visible()
    expect(_nav(page).get_by_text("Audit log", exact=True)).to_be_visible()
    expect(page.get_by_text("SEBI-registered")).to_be_visible()
    expect(page.get_by_role("button", name="Login")).to_have_count(0)
    page.wait_for_timeout(500)  # let the metrics settle before the screenshot
    shot = desk.log_dir / "dashboard.png"  # kept with the app logs for a human to look at
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_wrong_password_is_refused(desk: App, context: sync_api.BrowserContext) -> None:
    page = context.new_page()
    page.goto(desk.url)
    _submit_login(page, "rahul", desk.logins["rahul"].password + "-wrong")
    expect(page.get_by_text("Username or password is incorrect")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_role("button", name="Login")).to_be_visible()
    expect(page.get_by_role("heading", name="Dashboard · Sharma family")).to_have_count(0)
    assert _session_cookie(context) is None


def test_viewer_navigation_hides_admin_pages(desk: App, context: sync_api.BrowserContext) -> None:
    page = context.new_page()
    _login(page, desk, "aarav")
    nav = _nav(page)
    expect(nav.get_by_text("Dashboard", exact=True)).to_be_visible()
    expect(nav.get_by_text("Profile", exact=True)).to_be_visible()
    expect(nav.get_by_text("Users", exact=True)).to_have_count(0)
    expect(nav.get_by_text("Audit log", exact=True)).to_have_count(0)


def test_logout_ends_the_server_side_session_and_voids_the_cookie(
        desk: App, browser: sync_api.Browser, context: sync_api.BrowserContext) -> None:
    page = context.new_page()
    _login(page, desk, "rahul")
    cookie = _wait_for_cookie(context)
    assert cookie is not None, "the library never set the re-login cookie"
    captured = context.cookies()

    page.get_by_test_id("stSidebar").get_by_role("button", name="Log out").click()
    _login_form_visible(page)
    # the notice stays until the next login; a rerun in flight can hide it for a moment
    expect(page.get_by_text("You are logged out.")).to_be_visible(timeout=WAIT_MS)

    page.reload()
    _login_form_visible(page)
    expect(page.get_by_role("heading", name="Dashboard · Sharma family")).to_have_count(0)

    replay = browser.new_context()
    try:
        replay.add_cookies(captured)
        assert _session_cookie(replay) is not None
        stale = replay.new_page()
        stale.goto(desk.url)
        _login_form_visible(stale)
        expect(stale.get_by_role("heading", name="Dashboard · Sharma family")).to_have_count(0)
    finally:
        replay.close()


def test_cookie_relogs_in_a_new_tab_while_the_session_is_active(
        desk: App, context: sync_api.BrowserContext) -> None:
    page = context.new_page()
    _login(page, desk, "priya")
    assert _wait_for_cookie(context) is not None, "the library never set the re-login cookie"
    tab = context.new_page()
    tab.goto(desk.url)
    _dashboard_visible(tab)
    expect(tab.get_by_text("Welcome, Priya Sharma.")).to_be_visible()
    expect(tab.get_by_role("button", name="Login")).to_have_count(0)


def test_market_page_shows_the_replay_feed_running_and_the_sample_universe(
        desk: App, context: sync_api.BrowserContext) -> None:
    page = _open(context, desk, "priya", "Market")
    expect(page.get_by_text("NIFTY-50 constituents").first).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("Replaying session", exact=False)).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("The feed has stalled")).to_have_count(0)
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=WAIT_MS)  # sectors
    assert page.get_by_text("NIFTY 50", exact=True).count() == 0


def test_chart_page_draws_candles_and_switches_to_five_minute_bars(
        desk: App, context: sync_api.BrowserContext) -> None:
    page = _open(context, desk, "rahul", "Chart")
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=WAIT_MS)
    page.get_by_text("5-minute", exact=True).click()
    expect(page.get_by_text("not adjusted", exact=False).first).to_be_visible(timeout=WAIT_MS)
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=WAIT_MS)


def test_an_admin_uploads_csvs_a_bad_one_is_refused_with_the_rule_a_good_one_imports(
        desk: App, context: sync_api.BrowserContext, tmp_path: Path) -> None:
    bad = tmp_path / "ACME.csv"
    bad.write_text("date,open,high,low,close,volume\n2025-09-29,100,90,95,96,10\n")  # high < low
    good = tmp_path / "ZENITH.csv"
    good.write_text("date,open,high,low,close,volume\n"
                    "2025-09-29,100,110,95,105,1000\n2025-09-30,105,112,101,110,1500\n")
    page = _open(context, desk, "rahul", "Import data")
    page.locator("input[type=file]").set_input_files([str(bad), str(good)])
    expect(page.get_by_text("ZENITH.csv", exact=True)).to_be_visible(timeout=WAIT_MS)
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_text("ACME.csv: refused, nothing imported")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("high must be ≥ low", exact=False).first).to_be_visible()
    expect(page.get_by_text("ZENITH.csv: 2 bars of ZENITH 1d imported")).to_be_visible(
        timeout=WAIT_MS)
    services = Services(Database(desk.db_url), make_settings(desk.db_url))
    try:
        rahul = services.auth.check_session(services.auth.login(
            "rahul", desk.logins["rahul"].password, TEST_CLIENT).session_id or "")
        assert services.marketdata.instrument(rahul, "ZENITH").symbol == "ZENITH"
        with pytest.raises(ValidationError, match="Unknown symbol 'ACME'"):
            services.marketdata.instrument(rahul, "ACME")  # the refused file wrote nothing
    finally:
        services.db.dispose()


def _latest_price(desk: App, symbol: str) -> Decimal:
    """Return the replay feed's last price of ``symbol`` (waiting for the feed to write one)."""
    services = Services(Database(desk.db_url), make_settings(desk.db_url))
    try:
        deadline = time.monotonic() + WAIT_MS / 1000
        while time.monotonic() < deadline:
            quote = services.feed.quotes().get(symbol)
            if quote is not None:
                return quote.ltp
            time.sleep(0.5)
    finally:
        services.db.dispose()
    raise AssertionError(f"the replay feed wrote no {symbol} quote\n{desk.logs()}")


def _settled(page: sync_api.Page) -> None:
    """Wait until no script run is in flight (pages past the login have no cookie iframe)."""
    for _ in range(2):
        expect(page.get_by_test_id("stStatusWidget")).to_be_hidden(timeout=WAIT_MS)
        page.wait_for_timeout(300)


def _choose(page: sync_api.Page, label: str, option: str) -> None:
    """Pick ``option`` in the visible selectbox labelled ``label`` (typing to search).

    The option may carry more after " · " (the ticket shows each symbol's last price).
    """
    box = page.get_by_test_id("stSelectbox").filter(
        has=page.get_by_text(label, exact=True)).locator("visible=true").first
    box.click()
    page.keyboard.type(option)
    page.get_by_role("option", name=re.compile(rf"^{re.escape(option)}( · .+)?$")).click()


def test_a_trader_places_a_limit_order_sees_it_in_the_order_book_and_cancels_it(
        desk: App, context: sync_api.BrowserContext) -> None:
    page = _open(context, desk, "priya", "Trade")
    expect(page.get_by_text("Market open", exact=False)).to_be_visible(timeout=WAIT_MS)
    _settled(page)
    # 3 % under the last price: a resting order inside the day's price band.
    price = (_latest_price(desk, "INFY") * Decimal("0.97") / Decimal("0.05")).quantize(
        Decimal(1)) * Decimal("0.05")
    _choose(page, "Symbol", "INFY")
    _choose(page, "Order type", "LIMIT")
    quantity = page.get_by_role("spinbutton", name="Quantity").locator("visible=true").first
    quantity.fill("2")
    quantity.press("Tab")
    price_box = page.get_by_role("spinbutton", name="Price [₹]", exact=True)
    price_box.fill(f"{price:.2f}")
    price_box.press("Tab")
    page.get_by_role("button", name="Place order").click()
    placed = page.get_by_text(re.compile(r"BUY \d+ INFY \(LIMIT, CNC\) placed"))
    expect(placed).to_be_visible(timeout=WAIT_MS)
    text = placed.inner_text()
    order_id = int(text.split("#", 1)[1].split(" ", 1)[0])
    shares = int(text.split("BUY ", 1)[1].split(" ", 1)[0])
    # The risk gate may place fewer (half size in a CHOPPY market); then the page says so.
    assert 1 <= shares <= 2
    if shares < 2:
        assert "reduced it from the 2 shares requested" in text

    _nav(page).get_by_text("Orders", exact=True).click()
    expect(page.get_by_role("heading", name="Orders", exact=True)).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible(timeout=WAIT_MS)
    # The order book grid draws on a canvas; the open-order picker names the order in text.
    expect(page.get_by_role("combobox", name="Open order")).to_have_value(
        f"#{order_id} · Priya · Trading · BUY {shares} INFY LIMIT @ {rupees(price)} (OPEN)",
        timeout=WAIT_MS)
    _settled(page)
    page.get_by_role("button", name="Cancel order").click()
    expect(page.get_by_text(f"Order #{order_id} cancelled.")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_role("button", name="Cancel order")).to_have_count(0)
    services = Services(Database(desk.db_url), make_settings(desk.db_url))
    try:
        priya = services.auth.check_session(services.auth.login(
            "priya", desk.logins["priya"].password, TEST_CLIENT).session_id or "")
        order = next(o for o in services.orders.order_book(priya) if o.id == order_id)
        assert (order.symbol, order.quantity, order.price) == ("INFY", shares, price)
        assert order.status.value == "CANCELLED"
    finally:
        services.db.dispose()


def _wait_for_first_model(desk: App, seconds: float = 300.0) -> str:
    """Return the version the worker trained on start (it does on a desk without a model)."""
    services = Services(Database(desk.db_url), make_settings(desk.db_url))
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                return services.models.in_use().version.version
            except ValidationError:  # NotFound: no active model yet, the worker is training
                time.sleep(1.0)
    finally:
        services.db.dispose()
    raise AssertionError(f"the worker trained no first model in {seconds:.0f} s\n{desk.logs()}")


def test_a_trader_generates_a_signal_sees_its_chart_and_evidence_then_scans_the_universe(
        desk: App, context: sync_api.BrowserContext) -> None:
    version = _wait_for_first_model(desk)
    page = _open(context, desk, "priya", "Signals")
    _settled(page)
    _choose(page, "Symbol", "INFY")
    page.get_by_role("button", name="Generate signal").click()
    expect(page.get_by_role("heading", name="INFY:", exact=False)).to_be_visible(
        timeout=WAIT_MS)
    expect(page.get_by_text(version, exact=False).first).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("Not investment advice", exact=False).first).to_be_visible()
    chart = page.get_by_test_id("stPlotlyChart").locator("visible=true").first
    expect(chart).to_be_visible(timeout=WAIT_MS)
    for line in ("Entry", "Stop-loss", "Target 1"):  # the levels drawn on the chart
        expect(chart.get_by_text(line, exact=False).first).to_be_attached(timeout=WAIT_MS)

    page.get_by_role("tab", name="Scan").click()
    page.get_by_role("button", name="Scan all symbols").click()
    expect(page.get_by_role("combobox", name="Open a signal")).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("stDataFrame").locator("visible=true").first).to_be_visible()


def test_a_trader_presses_account_panic_confirms_sees_the_report_and_re_enables(
        desk: App, context: sync_api.BrowserContext) -> None:
    page = _open(context, desk, "priya", "Risk")
    _settled(page)
    _choose(page, "Show", "Priya · Trading (Priya Sharma)")
    expect(page.get_by_text("open positions", exact=False).first).to_be_visible(timeout=WAIT_MS)
    _settled(page)
    page.get_by_role("button", name="Panic: Priya · Trading").click()
    expect(page.get_by_text("Are you sure?", exact=False)).to_be_visible(timeout=WAIT_MS)
    services = Services(Database(desk.db_url), make_settings(desk.db_url))
    try:
        priya = services.auth.check_session(services.auth.login(
            "priya", desk.logins["priya"].password, TEST_CLIENT).session_id or "")
        assert services.risk.states(priya) == []  # nothing happens before the confirmation
        page.get_by_role("button", name="Confirm panic").click()
        report = page.get_by_text("Panic for the account Priya · Trading", exact=False)
        expect(report).to_be_visible(timeout=WAIT_MS)
        expect(page.get_by_text("Trading is stopped: Panic", exact=False)).to_be_visible(
            timeout=WAIT_MS)
        [state] = services.risk.states(priya)
        assert (state.kind.value, state.phase.value, state.account_label) == (
            "panic", "active", "Priya · Trading")
        assert [step.step for step in state.steps][-1] == "disable"
        _settled(page)
        page.screenshot(path=str(desk.log_dir / "risk_panic.png"), full_page=True)  # for a human
        note = page.get_by_role("textbox", name="Note (why trading may resume)")
        note.fill("browser test: all clear")
        note.press("Tab")
        page.get_by_role("button", name="Re-enable trading").click()
        expect(page.get_by_text("is cleared", exact=False)).to_be_visible(timeout=WAIT_MS)
        expect(page.get_by_text("Trading is stopped", exact=False)).to_have_count(0)
        assert services.risk.states(priya) == []
        [cleared] = services.risk.states(priya, include_cleared=True)
        assert (cleared.phase.value, cleared.cleared_by) == ("cleared", "priya")
    finally:
        services.db.dispose()


def test_a_member_connects_telegram_with_a_code_the_bot_links_and_then_unlinks(
        desk: App, context: sync_api.BrowserContext) -> None:
    admin = Services(Database(desk.db_url), make_settings(desk.db_url))
    try:  # the household admin sets up the bot first (README, Telegram step 1)
        rahul = admin.auth.check_session(admin.auth.login(
            "rahul", desk.logins["rahul"].password, TEST_CLIENT).session_id or "")
        admin.telegram.set_bot_token(rahul, BOT_TOKEN)
        served = frozenset({rahul.household_id})  # the households that bot serves
    finally:
        admin.db.dispose()
    page = _open(context, desk, "kamla", "Alerts")
    expect(page.get_by_text("Telegram is not linked", exact=False)).to_be_visible(
        timeout=WAIT_MS)
    _settled(page)
    # A rerun can briefly show the previous run's tabs beside the new ones; both hold the same
    # keyed button (one widget id), so clicking either is the same press.
    connect = page.get_by_role("button", name="Connect").first
    expect(connect).to_be_visible(timeout=WAIT_MS)
    connect.click()
    shown = page.get_by_role("heading").filter(has_text=re.compile(r"^[A-Z2-9]{8}$"))
    expect(shown).to_be_visible(timeout=WAIT_MS)
    code = shown.inner_text().strip()
    expect(page.get_by_text(f"/start {code}", exact=False)).to_be_visible()
    page.screenshot(path=str(desk.log_dir / "alerts_code.png"), full_page=True)  # for a human
    services = Services(Database(desk.db_url), make_settings(desk.db_url))
    try:
        linked = services.telegram.link_chat(code, 777001, "kamla_t", served)  # as the bot does
        assert linked.username == "kamla"
        # no reload: the page looks for the link every few seconds while the code is shown
        expect(page.get_by_text("Linked to @kamla_t since", exact=False)).to_be_visible(
            timeout=WAIT_MS)
        expect(shown).to_have_count(0)
        _settled(page)
        unlink = page.get_by_role("button", name="Unlink").first  # see Connect above
        expect(unlink).to_be_visible(timeout=WAIT_MS)
        unlink.click()
        expect(page.get_by_text("Telegram unlinked", exact=False)).to_be_visible(
            timeout=WAIT_MS)
        expect(page.get_by_text("Telegram is not linked", exact=False)).to_be_visible()
        kamla = services.auth.check_session(services.auth.login(
            "kamla", desk.logins["kamla"].password, TEST_CLIENT).session_id or "")
        assert services.telegram.link_status(kamla).linked is False
    finally:
        services.db.dispose()


def test_a_withdrawal_leaves_the_funds_page_on_the_withdraw_tab_with_its_message(
        desk: App, context: sync_api.BrowserContext) -> None:
    page = _open(context, desk, "priya", "Funds & statements")
    _settled(page)
    withdraw = page.get_by_role("tab", name="Withdraw funds")
    withdraw.click()
    expect(withdraw).to_have_attribute("aria-selected", "true", timeout=WAIT_MS)
    _settled(page)
    amount = page.get_by_role("textbox", name="Amount [₹]").last  # the Withdraw tab's form
    amount.fill("1,000")
    amount.press("Tab")
    page.get_by_role("button", name="Withdraw funds", exact=True).click()
    expect(page.get_by_text("Withdrew ₹1,000.00 of paper funds", exact=False)).to_be_visible(
        timeout=WAIT_MS)
    _settled(page)
    # The message above the tabs moved them down the page; the browser keeps Withdraw open.
    expect(page.get_by_role("tab", name="Withdraw funds")).to_have_attribute(
        "aria-selected", "true")
    expect(page.get_by_role("tab", name="Add funds")).to_have_attribute(
        "aria-selected", "false")
