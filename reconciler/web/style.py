"""The pages' one stylesheet, and the Content-Security-Policy that admits it alone.

The CSS is inlined in every page (a snapshot must stand alone, and the daemon
serves no files), so the policy names it by its SHA-256 instead of allowing
inline styles: an injected ``<style>`` or ``style=""`` would not apply, and no
script of any kind runs. The pages carry no ``style`` attributes for this
reason; colours come from classes (SVG included)."""

from __future__ import annotations

import base64
import hashlib

CSS = """
:root{color-scheme:light dark;--fg:#1b1f24;--muted:#57606a;--bg:#fff;--panel:#f6f8fa;
--line:#d0d7de;--link:#0a58ca;--ok-fg:#0f5323;--ok-bg:#d6f5de;--warn-fg:#6b4400;
--warn-bg:#fff0c2;--crit-fg:#8a1118;--crit-bg:#ffdadc;--unk-fg:#3d444d;--unk-bg:#e6e9ed;
--run-fg:#0b3f8a;--run-bg:#d9e8ff;--chart-line:#0a58ca;--chart-bar:#9ec5fe}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9da7b3;--bg:#0d1117;
--panel:#161b22;--line:#30363d;--link:#79b8ff;--ok-fg:#aff5b4;--ok-bg:#0f3d1d;
--warn-fg:#ffdf8a;--warn-bg:#4d3800;--crit-fg:#ffc1c0;--crit-bg:#5c1216;--unk-fg:#c9d1d9;
--unk-bg:#30363d;--run-fg:#b6d4fe;--run-bg:#0c2d5c;--chart-line:#79b8ff;--chart-bar:#1f4f8f}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg)}
header,main,footer{max-width:80rem;margin:0 auto;padding:0 1rem}
header{padding-top:.75rem;padding-bottom:.25rem;border-bottom:1px solid var(--line)}
header nav{display:flex;flex-wrap:wrap;gap:.25rem 1rem;align-items:baseline}
header .brand{font-weight:600}
footer{margin-top:2rem;padding-bottom:1.5rem;color:var(--muted);font-size:.875rem}
h1{font-size:1.6rem;margin:1rem 0 .5rem;overflow-wrap:anywhere}
h2{font-size:1.25rem;margin:1.75rem 0 .5rem}
h3{font-size:1.05rem;margin:1.25rem 0 .5rem}
a{color:var(--link)}
code{font:.875em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}
.muted,small{color:var(--muted)}
small{display:block;font-size:.8125rem;overflow-wrap:anywhere}
.table-wrap{overflow-x:auto;border:1px solid var(--line);border-radius:6px}
table{border-collapse:collapse;width:100%;font-size:.9375rem}
th,td{padding:.45rem .6rem;text-align:left;vertical-align:top;border-bottom:1px solid var(--line)}
th{background:var(--panel);font-weight:600;white-space:nowrap}
tbody tr:last-child td{border-bottom:0}
td.num,th.num{text-align:right;white-space:nowrap}
td.reconcile,td.key code,td.key time{white-space:nowrap}
td.why{min-width:16rem}
td.why p{margin:0 0 .4rem}
td.name{min-width:8rem;max-width:14rem}
td.name a{overflow-wrap:anywhere}
td.name small{overflow-wrap:normal}
td.error{overflow-wrap:anywhere;min-width:12rem}
.health,.status,.pill{white-space:nowrap}
.tone-ok,.health-ok,.tone-warning,.health-warning,.tone-critical,.health-critical,
.tone-unknown,.health-unknown,.tone-running{font-weight:600}
span.health,span.status,.pill{display:inline-block;padding:0 .5rem;border-radius:1rem}
.tone-ok,.health-ok{color:var(--ok-fg);background:var(--ok-bg)}
.tone-warning,.health-warning{color:var(--warn-fg);background:var(--warn-bg)}
.tone-critical,.health-critical{color:var(--crit-fg);background:var(--crit-bg)}
.tone-unknown,.health-unknown{color:var(--unk-fg);background:var(--unk-bg)}
.tone-running{color:var(--run-fg);background:var(--run-bg)}
td.health,td.status{background:none}
td.health-ok .pill,td.tone-ok .pill{background:var(--ok-bg)}
td.health-warning .pill,td.tone-warning .pill{background:var(--warn-bg)}
td.health-critical .pill,td.tone-critical .pill{background:var(--crit-bg)}
td.health-unknown .pill,td.tone-unknown .pill{background:var(--unk-bg)}
td.tone-running .pill{background:var(--run-bg)}
ul.alerts{margin:0;padding:0;list-style:none}
ul.alerts li{margin:0 0 .35rem;padding:.3rem .5rem;border-radius:4px;border-left:4px solid}
ul.alerts li.tone-warning{border-color:var(--warn-fg)}
ul.alerts li.tone-critical{border-color:var(--crit-fg)}
ul.alerts li .kind{font-weight:700}
ul.alerts li{font-weight:400;overflow-wrap:anywhere}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:0}
dl.facts dt{color:var(--muted)}
dl.facts dd{margin:0;overflow-wrap:anywhere}
section.running{margin-top:1.25rem;background:var(--panel);border:1px solid var(--line);
border-radius:6px;padding:.25rem 1rem 1rem}
progress{width:100%;height:1.25rem}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(18rem,1fr));gap:1rem}
figure{margin:0}
figcaption{font-weight:600;margin-bottom:.25rem}
svg.chart{width:100%;height:auto;display:block;border:1px solid var(--line);border-radius:6px}
svg.chart .axis{stroke:var(--muted);stroke-width:1}
svg.chart .grid{stroke:var(--line);stroke-width:1}
svg.chart text{fill:var(--muted);font:13px system-ui,sans-serif}
svg.chart .series{fill:none;stroke:var(--chart-line);stroke-width:2}
svg.chart .bar{fill:var(--chart-bar)}
svg.chart .mark-ok{fill:var(--chart-line)}
svg.chart .mark-warning{fill:var(--warn-fg)}
svg.chart .mark-critical{fill:var(--crit-fg)}
svg.chart .mark-unknown,svg.chart .mark-running{fill:var(--muted)}
svg.chart .legend-line{stroke:var(--chart-line);stroke-width:2}
nav.pager{display:flex;gap:1rem;align-items:baseline;margin:.75rem 0;flex-wrap:wrap}
@media (max-width:40rem){body{font-size:15px}h1{font-size:1.35rem}
dl.facts{grid-template-columns:1fr;gap:0}dl.facts dd{margin-bottom:.5rem}
.table-wrap{border:0;overflow:visible}
table.cards,table.cards tbody,table.cards tr,table.cards td{display:block}
table.cards thead{position:absolute;width:1px;height:1px;overflow:hidden;
clip-path:inset(50%);white-space:nowrap}
table.cards tr{display:grid;grid-template-columns:1fr 1fr;gap:.5rem 1rem;margin:0 0 .75rem;
padding:.6rem .75rem;border:1px solid var(--line);border-radius:6px}
table.cards td{padding:0;border:0;min-width:0;max-width:none;text-align:left;white-space:normal}
table.cards td[data-label]::before{content:attr(data-label);display:block;
color:var(--muted);font-size:.8125rem;font-weight:400}
table.cards td.name{grid-row:1;grid-column:1;font-weight:600}
table.cards td.name small{font-weight:400}
table.cards td.name::before,table.cards td.health::before,table.cards td.status::before,
table.cards td.why::before{display:none}
table.cards td.health,table.cards td.status{grid-row:1;grid-column:2;justify-self:end}
table.cards td.why,table.cards td.error,table.cards td.key,table.cards td.verified{grid-column:1/-1}
table.cards td.error:empty{display:none}
table.cards td.key code{white-space:normal;overflow-wrap:anywhere}
svg.chart text{font-size:14px}}
""".strip()
"""Pages are built by string formatting, so this text is the ``<style>`` element's
content byte for byte; its hash below is what the policy admits."""

STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()

CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src '{STYLE_HASH}'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""No script source at all: nothing on a page may run, injected or not."""

SNAPSHOT_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY.replace("; frame-ancestors 'none'", "")
"""In a meta tag a browser ignores frame-ancestors (and says so in its console)."""
