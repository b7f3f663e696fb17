"""The Audit page in a real browser: phases and their times, unbroken captions, the picked map point's panel."""

from __future__ import annotations

import time

from helpers.browser import wait_for
from helpers.files import sample_with_a_mislabelled_bag
from PIL import Image
from streamlit_browser import chromium_page, streamlit_server, wait_until_drawn, wait_until_idle

# For each image caption: the words that the browser drew over more than one line (a word broken mid-name).
BROKEN_WORDS = """() => [...document.querySelectorAll('[data-testid="stImageCaption"]')].map(caption => {
    const walker = document.createTreeWalker(caption, NodeFilter.SHOW_TEXT);
    const broken = [];
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        for (const match of node.textContent.matchAll(/\\S+/g)) {
            const range = document.createRange();
            range.setStart(node, match.index);
            range.setEnd(node, match.index + match[0].length);
            const lines = new Set([...range.getClientRects()].map(rect => Math.round(rect.top)));
            if (lines.size > 1) broken.push(match[0]);
        }
    }
    return {caption: caption.innerText, broken};
})"""


def test_audit_page_phases_captions_and_the_picked_point_in_the_browser(tmp_path):
    data = sample_with_a_mislabelled_bag(tmp_path / "fashion")
    original = sorted((data / "ankle_boot").glob("*.png"))[0]
    Image.open(original).convert("L").resize((36, 36), Image.Resampling.BICUBIC).save(
        original.parent / f"copy-{original.stem}.jpg", quality=85)  # a near-duplicate group with long names
    environment = {"IMGCLF_DATA_DIR": str(data), "IMGCLF_RUNS_DIR": str(tmp_path / "runs")}  # a fresh cache: conftest
    with streamlit_server(environment) as url, chromium_page(width=1400, height=2600) as page:
        page.goto(url + "audit")
        page.get_by_role("button", name="Run the audit").click()
        seen = set()
        deadline = time.monotonic() + 300
        while not page.get_by_text("Labels most likely wrong").count() and time.monotonic() < deadline:
            bar = page.locator('[data-testid="stProgress"]')
            if bar.count():
                seen.update(text.split(" ")[0] for text in bar.all_inner_texts() if "(step" in text)
            time.sleep(0.2)
        assert "Embedding" in seen, seen  # the bar names the phase it is in
        wait_until_drawn(page, expect_images=True)
        main = page.locator('[data-testid="stMain"]').inner_text()
        assert "Returns (report" not in main
        assert "Audited in " in main and "out-of-fold heads" in main and "near-duplicates" in main
        assert "labelled bag · looks like trouser · +" in main
        assert "ankle_boot · copy-" in main  # the duplicate captions: class and file name
        broken = [item for item in page.evaluate(BROKEN_WORDS) if item["broken"]]
        assert broken == [], broken

        chart = page.locator('[data-testid="stVegaLiteChart"]').last
        chart.scroll_into_view_if_needed()
        box = chart.bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # the nearest point is picked
        wait_for(lambda: page.get_by_text("Picked on the map:").count() == 1, "the picked point's panel")
        wait_until_idle(page)
        panel = page.locator('[data-testid="stMain"]').inner_text().split("Picked on the map:", 1)[1]
        assert "labelled " in panel and "looks like " in panel, panel
        assert page.locator('[data-testid="stSelectbox"]').count() == 13  # the gallery's twelve menus and its
