// Opens a speedscope file in speedscope (the npm package) in headless Chromium, driven by
// playwright-core: node speedscope_view.js <speedscope index.html URL> <profile URL> <screenshot.png>.
// Prints the text of speedscope's sandwich view (its function table, searched for py::), as JSON.
const path = require("path");
const { chromium } = require(path.join(process.env.NODE_MODULES, "playwright-core"));

(async () => {
  const [app, profile, shot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    // A fresh profile directory comes with launch(); no network beyond the local server.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 800 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(app + "#profileURL=" + encodeURIComponent(profile));
    // The flame chart is drawn on a canvas once the profile is loaded; the toolbar names the views.
    await page.getByText("Left Heavy").first().click({ timeout: 30000 });
    await page.waitForTimeout(1000);
    await page.screenshot({ path: shot });
    // The sandwich view's function table is HTML (the flame chart is not); its search keeps the
    // rows that match, so our frames are listed whatever their self time.
    // Each step waits for the last to show: on a loaded machine a key pressed before the view
    // is ready goes nowhere (a CI run timed out that way).
    await page.getByText("Sandwich").first().click();
    await page.getByText("Symbol Name").first().waitFor({ timeout: 30000 });
    await page.keyboard.press("Control+f");
    await page.keyboard.type("py::");
    await page.getByText("py::foo").first().waitFor({ timeout: 30000 });
    const text = await page.evaluate(() => document.body.innerText);
    console.log(JSON.stringify({ text, errors }));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
