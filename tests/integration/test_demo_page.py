"""The demo page in a real headless Chromium (Debian's), against the real topology."""

import signal

import pytest
from playwright.async_api import async_playwright, expect

from devstack import Stack
from tests.integration.clients import publish
from tests.integration.conftest import running

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
# Flags for a closed network: no background fetches, no first-run, no sandbox as root.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def demo_stack():
    topology = Stack(env={"GROUPCAST_DRAIN_SECONDS": "0.5"})
    yield from running(topology)


@pytest.fixture
async def page(demo_stack):
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(demo_stack.http_url + "/")
        yield page
        await browser.close()
        assert errors == []


async def test_subscribe_publish_and_watch_messages_arrive(page, demo_stack):
    await page.fill("#api-key", demo_stack.api_key)
    await page.fill("#group", "demo")
    await page.click("#subscribe")
    await expect(page.locator("#status")).to_contain_text("subscribed to demo", timeout=10000)

    await page.fill("#data", '{"text": "from the page"}')
    await page.click("#publish")
    await expect(page.locator("#published")).to_contain_text("published at", timeout=10000)
    first = page.locator("li.message").first
    await expect(first).to_contain_text('"from the page"', timeout=10000)

    offset = publish(demo_stack, "demo", {"text": "from the API"})
    await expect(page.locator(f'li.message[data-offset="{offset}"]')).to_contain_text("from the API", timeout=10000)


async def test_the_client_resumes_by_offset_after_a_server_restart(page, demo_stack):
    await page.fill("#api-key", demo_stack.api_key)
    await page.fill("#group", "restart")
    await page.click("#subscribe")
    await expect(page.locator("#status")).to_contain_text("subscribed to restart", timeout=10000)
    before = publish(demo_stack, "restart", "before")
    await expect(page.locator(f'li.message[data-offset="{before}"]')).to_be_visible(timeout=10000)

    demo_stack.signal("socket0", signal.SIGTERM)  # drain: the page gets 1012
    demo_stack.wait_exit("socket0", 15)
    missed = publish(demo_stack, "restart", "while away")
    demo_stack.start_socket(0)
    demo_stack.wait_ready()

    await expect(page.locator(f'li.message[data-offset="{missed}"]')).to_contain_text("while away", timeout=20000)
    after = publish(demo_stack, "restart", "after")
    await expect(page.locator(f'li.message[data-offset="{after}"]')).to_be_visible(timeout=10000)
    assert await page.locator("li.message").count() == 3
