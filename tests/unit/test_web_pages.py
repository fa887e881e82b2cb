"""The status pages rendered from hand-built reports: the HTML contract the
browser tests rely on, escaping, the policy's hash, accessibility and paging."""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from reconciler.usecases.status_model import (
    AlertKind,
    BackupPage,
    Health,
    LastReconcile,
    StatusReport,
)
from reconciler.web import (
    CONTENT_SECURITY_POLICY,
    render_backup,
    render_configuration,
    render_overview,
    render_problem,
    render_snapshot,
)
from tests.unit.html_tree import Element, parse
from tests.unit.status_fixtures import (
    NOW,
    alert,
    backup,
    configuration,
    history,
    report,
    running,
    source,
)

PAYLOAD = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>&amp;"


def test_the_overview_shows_each_configurations_health_by_word_and_by_colour() -> None:
    west = configuration(
        "region-west",
        Health.CRITICAL,
        alerts=(alert(AlertKind.CAPACITY, "the share is full"),),
    )
    east = configuration("region-east", Health.OK)
    page = parse(render_overview(report(west, east)))
    table = page.by_id("configurations")
    rows = table.find_all("tr", data_configuration="region-west")
    assert len(rows) == 1
    health = rows[0].one("td", cls="health")
    assert "health-critical" in health.classes and health.text == "critical"
    assert rows[0].one("li", data_kind="capacity").text.endswith("the share is full")
    assert rows[0].one("ul", cls="alerts")
    east_row = table.one("tr", data_configuration="region-east")
    assert east_row.one("td", cls="health").text == "ok"
    assert east_row.find_all("ul", cls="alerts") == [], "no empty alert list"
    link = rows[0].one("a")
    assert link.attrs["href"] == "/configurations/region-west"


def test_every_health_has_its_own_word_and_class() -> None:
    configs = [configuration(f"c-{h.value}", h) for h in Health]
    page = parse(render_overview(report(*configs)))
    for h in Health:
        cell = page.one("tr", data_configuration=f"c-{h.value}").one("td", cls="health")
        assert cell.classes == {"health", f"health-{h.value}"} and cell.text == h.value


def test_the_configuration_page_lists_backups_with_status_words_and_both_charts() -> None:
    failed = backup(0, "Failed", (source("db", "Failed", "pg_dump: connection refused"),))
    config = configuration(backups=(failed, backup(1), backup(2)))
    page = parse(render_configuration(config, NOW))
    rows = page.by_id("backups").find_all("tr", data_backup=failed.id)
    assert len(rows) == 1 and rows[0].one("td", cls="status").text == "Failed"
    assert "tone-critical" in rows[0].one("td", cls="status").classes
    link = rows[0].one("a").attrs["href"]
    assert link == f"/configurations/region-west/backups/{failed.id}"
    for ident in ("chart-size", "chart-duration"):
        chart = page.by_id(ident)
        assert chart.tag == "svg" and chart.attrs["role"] == "img"
        assert chart.one("title").text and "3 backups" in chart.one("desc").text
        assert set(chart.attrs["aria-labelledby"].split()) == {f"{ident}-title", f"{ident}-desc"}
    assert page.find_all("section", id="running") == [], "nothing is running"


def test_a_backup_in_progress_shows_a_progress_bar_of_its_bytes() -> None:
    config = configuration(running=running(bytes_stored=3_000_000, bytes_expected=12_000_000))
    section = parse(render_configuration(config, NOW)).by_id("running")
    bar = section.one("progress")
    assert bar.attrs["value"] == "3000000" and bar.attrs["max"] == "12000000"
    assert "db" in section.text and "1 of 2 sources done" in section.text
    # Without a guess of the size, the sources done are the measure.
    unknown = configuration(running=running(bytes_expected=None, source=None))
    bar = parse(render_configuration(unknown, NOW)).by_id("running").one("progress")
    assert bar.attrs["value"] == "1" and bar.attrs["max"] == "2"


@pytest.mark.parametrize(
    ("page_number", "prev", "next_"),
    [(1, None, "?page=2"), (2, "?page=1", "?page=3"), (3, "?page=2", None)],
)
def test_long_histories_are_paged_with_prev_and_next_links(
    page_number: int, prev: str | None, next_: str | None
) -> None:
    config = configuration(backups=(backup(0),), total=120, page=page_number, page_size=50)
    page = parse(render_configuration(config, NOW))
    links = {a.attrs["rel"]: a.attrs["href"] for a in page.find_all("a") if "rel" in a.attrs}
    assert links.get("prev") == prev and links.get("next") == next_
    assert f"Page {page_number} of 3" in page.text


def test_one_page_of_backups_has_no_paging_links() -> None:
    page = parse(render_configuration(configuration(), NOW))
    assert [a for a in page.find_all("a") if "rel" in a.attrs] == []


def test_the_backup_page_lists_each_sources_status_and_error() -> None:
    item = backup(0, "PartiallySucceeded", (source("db", "Failed", "disk full"), source("files")))
    page = parse(render_backup("region-west", item, NOW))
    sources = page.by_id("sources")
    db = sources.one("tr", data_source="db")
    assert db.one("td", cls="status").text == "Failed"
    assert db.one("td", cls="error").text == "disk full"
    files = sources.one("tr", data_source="files")
    assert files.one("td", cls="status").text == "Succeeded"
    assert files.one("td", cls="error").text == ""
    assert page.one("h1").text == f"Backup {item.id}"


def hostile_report() -> StatusReport:
    """Every string a repository, a command or a configuration supplies, hostile."""
    bad_source = replace(source("db", "Failed", PAYLOAD), kind=PAYLOAD, name=PAYLOAD)
    bad_backup = replace(
        backup(0, "Failed", (bad_source,)),
        trigger=PAYLOAD,
        key_thumbprint=PAYLOAD,
        verification_error=PAYLOAD,
        status=PAYLOAD,
        id=PAYLOAD,
    )
    config = configuration(
        "region-west",
        Health.CRITICAL,
        backups=(bad_backup,),
        location=PAYLOAD,
        health_reason=PAYLOAD,
        key_thumbprint=PAYLOAD,
        certificate_subject=PAYLOAD,
        alerts=(alert(AlertKind.GENERAL, PAYLOAD),),
        last_reconcile=LastReconcile(NOW, PAYLOAD, PAYLOAD),
        running=running(source=PAYLOAD, backup_id=PAYLOAD),
        history=tuple(replace(p, status=PAYLOAD) for p in history(3)),
    )
    return report(config)


def all_pages(rep: StatusReport) -> dict[str, str]:
    config = rep.configurations[0]
    return {
        "overview": render_overview(rep),
        "configuration": render_configuration(config, NOW),
        "backup": render_backup(config.name, config.backups.items[0], NOW),
        "snapshot": render_snapshot(rep),
        "problem": render_problem(PAYLOAD, PAYLOAD, NOW),
    }


@pytest.mark.parametrize("name", ["overview", "configuration", "backup", "snapshot", "problem"])
def test_html_in_any_value_is_shown_as_text_and_never_becomes_markup(name: str) -> None:
    text = all_pages(hostile_report())[name]
    page = parse(text)
    assert page.find_all("script") == [] and page.find_all("img") == []
    for element in page.iter():
        assert not any(attr.startswith("on") for attr in element.attrs), element
    assert PAYLOAD in page.text, "the error is shown, as text"
    assert "<script>" not in text


def test_no_page_has_script_inline_styles_or_anything_from_another_host() -> None:
    for name, text in all_pages(hostile_report()).items():
        page = parse(text)
        assert page.find_all("script") == [], name
        for element in page.iter():
            assert "style" not in element.attrs, f"{name}: the policy would block {element}"
            for attr in ("href", "src", "action", "data", "srcset"):
                target = element.attrs.get(attr)
                if target is not None:
                    assert target.startswith(("/", "?", "#")), f"{name}: {attr}={target}"
        assert page.find_all("link") == [] and page.find_all("iframe") == []
        # The SVG namespace is a name, never fetched; no other address appears.
        assert set(re.findall(r"https?://[^\s\"'<>]+", text)) <= {"http://www.w3.org/2000/svg"}


def style_hash(page: Element) -> str:
    css = page.one("style").text
    return "sha256-" + base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()


def test_the_policys_style_hash_is_the_hash_of_the_pages_style() -> None:
    for name, text in all_pages(report()).items():
        assert f"style-src '{style_hash(parse(text))}'" in CONTENT_SECURITY_POLICY, name
    assert "script-src" not in CONTENT_SECURITY_POLICY
    assert CONTENT_SECURITY_POLICY.startswith("default-src 'none';")


def test_the_snapshot_carries_the_policy_itself_and_stands_alone() -> None:
    west = configuration(
        "region-west",
        backups=(backup(0, "Failed", (source("db", "Failed", "boom"),)), backup(1)),
    )
    east = configuration("region-east")
    page = parse(render_snapshot(report(west, east)))
    meta = page.one("meta", http_equiv="Content-Security-Policy")
    assert f"style-src '{style_hash(page)}'" in meta.attrs["content"]
    assert "default-src 'none'" in meta.attrs["content"]
    ids = [e.attrs["id"] for e in page.iter() if "id" in e.attrs]
    assert len(ids) == len(set(ids)), "ids stay unique with two configurations"
    for link in page.find_all("a"):
        assert link.attrs["href"].startswith("#"), "no link needs the daemon"
        assert link.attrs["href"][1:] in ids, f"{link.attrs['href']} leads nowhere"
    failed = west.backups.items[0]
    section = page.by_id(f"backup-region-west-{failed.id}")
    assert section.one("tr", data_source="db").one("td", cls="error").text == "boom"
    assert page.by_id("backups-region-east") and page.by_id("chart-size-region-west")
    assert page.by_id("configurations").one("tr", data_configuration="region-east")


def heading_levels(page: Element) -> list[int]:
    return [int(e.tag[1]) for e in page.iter() if re.fullmatch(r"h[1-6]", e.tag)]


@pytest.mark.parametrize("name", ["overview", "configuration", "backup", "snapshot", "problem"])
def test_pages_are_structured_for_screen_readers_and_phones(name: str) -> None:
    rep = report(configuration(running=running(), alerts=(alert(AlertKind.CAPACITY, "x"),)))
    page = parse(all_pages(rep)[name])
    levels = heading_levels(page)
    assert levels[0] == 1 and levels.count(1) == 1
    assert all(b <= a + 1 for a, b in itertools.pairwise(levels)), levels
    assert all(th.attrs.get("scope") == "col" for th in page.find_all("th"))
    assert page.one("html").attrs["lang"] == "en"
    assert page.one("main")
    viewport = page.one("meta", name="viewport").attrs["content"]
    assert "width=device-width" in viewport


def test_charts_say_when_there_is_nothing_to_draw_and_mark_failures() -> None:
    empty = configuration(backups=(), history=())
    page = parse(render_configuration(empty, NOW))
    assert "No backups yet" in page.by_id("chart-size").text
    assert page.find_all(id="backups") == [] and "No backups yet." in page.one("main").text
    points = history(10)
    points = (*points[:5], replace(points[5], status="Failed"), *points[6:])
    chart = parse(render_configuration(configuration(history=points), NOW)).by_id("chart-size")
    marks = chart.find_all("circle")
    assert len(marks) == 1 and "mark-critical" in marks[0].classes
    assert "1 did not succeed" in chart.one("desc").text
    labels = [t.text for t in chart.find_all("text")]
    assert "0" in labels and any(label.endswith(" MB") for label in labels), labels


def test_a_page_of_a_10000_backup_history_renders_in_milliseconds() -> None:
    items = tuple(backup(i) for i in range(50))
    config = configuration(backups=items, total=10_000, history=history(500), page=7)
    start = time.perf_counter()
    text = render_configuration(config, NOW)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.1, f"{elapsed:.3f} s"
    assert "Page 7 of 200" in text


def test_an_empty_report_says_there_is_nothing() -> None:
    rep = StatusReport(generated_at=NOW, configurations=())
    assert "No configurations" in parse(render_overview(rep)).text
    page = BackupPage((), 1, 50, 0)
    assert page.pages == 1


def test_the_overview_row_stays_short_and_the_configuration_page_has_the_whole_story() -> None:
    reason = "the share is full"
    thumbprint = "3945B02E1AAD377F4DB189914E1BAB1BC267C0DA"
    message = "backup.run: backup 20261205T170547Z-8504b3 PartiallySucceeded: hosts: exit 3"
    config = configuration(
        "region-west",
        Health.CRITICAL,
        health_reason=reason,
        alerts=(alert(AlertKind.CAPACITY, reason),),
        key_thumbprint=thumbprint,
        last_reconcile=LastReconcile(NOW - timedelta(minutes=3), "failed", message),
    )
    row = parse(render_overview(report(config))).one("tr", data_configuration="region-west")
    assert row.one("td", cls="why").text.count(reason) == 1, "the alert says it once"
    key = row.one("code", title=thumbprint)
    assert key.text == "3945B02E…C0DA"
    assert message not in row.text and "failed" in row.text and "3 min ago" in row.text
    assert all(td.attrs.get("data-label") for td in row.find_all("td")), "labels for the cards"

    page = parse(render_configuration(config, NOW)).one("main")
    assert thumbprint in page.text and message in page.text
