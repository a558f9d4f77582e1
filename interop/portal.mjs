// Drives the customer portal in a real headless Chromium (puppeteer-core), as a customer would,
// and reports what it saw. Input: {browser, base, link, expiredLink, apiKey, otherEventId,
// blockedUrl, goodUrl, screenshot}. Output: what each step found (the Rust test asserts on it).
import puppeteer from "puppeteer-core";
import { readInput, writeOutput } from "./io.mjs";

const input = readInput();
const TIMEOUT = 30_000;
const out = {};

const browser = await puppeteer.launch({
  executablePath: input.browser,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});

async function text(page, selector) {
  return page.$eval(selector, (element) => element.textContent.trim());
}

async function rows(page) {
  return page.$$eval("#delivery-rows tr[data-event-id]", (trs) =>
    trs.map((tr) => ({ eventId: tr.dataset.eventId, status: tr.querySelector("td.status").textContent })),
  );
}

try {
  const page = await browser.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const violations = [];
  page.on("console", (message) => {
    if (/Content Security Policy/i.test(message.text())) violations.push(message.text());
  });

  // 1. The link signs the customer in, and its token leaves the address bar.
  await page.goto(input.link);
  await page.waitForSelector("body[data-ready=true]");
  out.who = await text(page, "#who");
  out.addressAfterSignIn = page.url();
  out.rowsAtStart = await rows(page);
  out.chartDrawn = (await page.$("#chart canvas")) !== null;

  // 2. A webhook URL the SSRF guard refuses is shown as refused; a good one is saved.
  await page.$eval("#url", (input, value) => (input.value = value), input.blockedUrl);
  await page.click("#url-form button[type=submit]");
  await page.waitForFunction(() => document.getElementById("url-error").textContent.length > 0);
  out.blockedUrlError = await text(page, "#url-error");
  await page.$eval("#url", (input, value) => (input.value = value), input.goodUrl);
  await page.click("#url-form button[type=submit]");
  await page.waitForFunction(() => document.getElementById("url-ok").textContent === "Saved.");
  out.urlShown = await page.$eval("#url", (input) => input.value);

  // 3. The failed delivery is resent, and turns delivered.
  const failed = out.rowsAtStart.find((row) => row.status === "dead_lettered");
  out.failedEventId = failed ? failed.eventId : null;
  if (failed) {
    await page.click(`tr[data-event-id="${failed.eventId}"] .resend-button`);
    await page.waitForFunction(() => document.getElementById("deliveries-status").textContent.startsWith("Resent"));
    const deadline = Date.now() + TIMEOUT;
    let status = "";
    while (Date.now() < deadline) {
      await page.click("#refresh");
      await new Promise((resolve) => setTimeout(resolve, 500));
      status = await page
        .$eval(`tr[data-event-id="${failed.eventId}"] td.status`, (td) => td.textContent)
        .catch(() => "");
      if (status === "delivered") break;
    }
    out.statusAfterResend = status;
    await page.click(`tr[data-event-id="${failed.eventId}"] .details-button`);
    await page.waitForSelector("tr.details pre.payload");
    out.attemptsShown = await text(page, "tr.details pre.attempts");
    out.payloadShown = await text(page, "tr.details pre.payload");
  }

  // 4. Another tenant's delivery is out of reach with this customer's credential.
  out.otherTenantStatus = await page.evaluate(async (eventId) => {
    const credential = sessionStorage.getItem("hookline.portal.credential");
    const response = await fetch(`/v1/customer/deliveries/${eventId}`, {
      headers: { Authorization: `Bearer ${credential}` },
    });
    return response.status;
  }, input.otherEventId);

  // The page fits its window (puppeteer's 800 px): no section scrolls sideways, with a delivery
  // opened to its attempts.
  out.sectionsScrollingSideways = await page.$$eval("section", (sections) =>
    sections.filter((s) => !s.hidden && s.scrollWidth > s.clientWidth).map((s) => `${s.id}: ${s.scrollWidth} > ${s.clientWidth}`),
  );
  await page.screenshot({ path: input.screenshot, fullPage: true });
  out.cspViolations = violations;

  // 5. An expired link is refused, and says so.
  const expired = await browser.createBrowserContext();
  const expiredPage = await expired.newPage();
  expiredPage.setDefaultTimeout(TIMEOUT);
  await expiredPage.goto(input.expiredLink);
  await expiredPage.waitForFunction(() => document.getElementById("sign-in-error").textContent.length > 0);
  out.expiredLinkError = await text(expiredPage, "#sign-in-error");
  out.expiredPortalHidden = await expiredPage.$eval("#portal", (main) => main.hidden);

  // 6. A customer signs in with its API key.
  const keyed = await browser.createBrowserContext();
  const keyedPage = await keyed.newPage();
  keyedPage.setDefaultTimeout(TIMEOUT);
  await keyedPage.goto(`${input.base}/portal`);
  await keyedPage.waitForSelector("#api-key");
  await keyedPage.type("#api-key", input.apiKey);
  await keyedPage.click("#sign-in-form button[type=submit]");
  await keyedPage.waitForSelector("body[data-ready=true]");
  out.apiKeyWho = await text(keyedPage, "#who");
  out.apiKeyRows = (await rows(keyedPage)).length;
} catch (error) {
  out.error = String(error && error.stack ? error.stack : error);
} finally {
  await browser.close();
}
writeOutput(out);
