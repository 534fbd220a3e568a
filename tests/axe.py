"""axe-core, the accessibility checker, run inside the page under test.

The npm package's ``axe.min.js`` is installed on first use with the machine's
npm (``npm install --prefix tests/artifacts/node axe-core@VERSION``; the
folder is ignored by git), so a bare machine with Node.js needs no step of its
own. The script is evaluated in the page (no <script> tag: the page's
Content-Security-Policy would refuse one), then ``axe.run`` checks the
document as it is at that moment.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path

from playwright.sync_api import Page

AXE_VERSION = "4.14.1"
NODE_DIR = Path(__file__).resolve().parent / "artifacts" / "node"
SCRIPT = NODE_DIR / "node_modules" / "axe-core" / "axe.min.js"


@cache
def axe_source() -> str:
    if not SCRIPT.exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed to install axe-core for the accessibility checks (apt-get install npm)"
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund",
                        f"axe-core@{AXE_VERSION}"], check=True, capture_output=True, timeout=300)
    return SCRIPT.read_text()


def violations(page: Page) -> list[dict]:
    """axe's violations in the page as shown now: rule, help, and the first offending elements."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source())
    return page.evaluate("""async () => {
        const result = await window.axe.run(document, {resultTypes: ["violations"]});
        return result.violations.map((v) => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 5).map((node) => node.target.join(" ") + ": " + node.failureSummary),
        }));
    }""")


def assert_accessible(page: Page, state: str) -> None:
    found = violations(page)
    assert found == [], f"axe-core violations ({state}):\n" + "\n".join(
        f"- {v['id']} ({v['impact']}): {v['help']}\n    " + "\n    ".join(v["nodes"]) for v in found)
