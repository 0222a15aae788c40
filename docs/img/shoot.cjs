// Takes the screenshots of docs/ui.md from a running ferry web UI:
//   node shoot.cjs http://127.0.0.1:18433 docs/img
// shoot.sh starts the demo this expects (jobs photos, docs, offsite) and
// installs playwright-core; Chromium is Debian's (CHROMIUM).
const { chromium } = require('playwright-core');

const [ui, out] = process.argv.slice(2);
const ns = `${ui}/namespaces/default`;
const list = (q) => `${ns}/workflows?query=${encodeURIComponent(q)}`;

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  // The columns docs/ui.md tells the reader to pick once (the UI keeps
  // them in the browser's local storage).
  await ctx.addInitScript(() => {
    window.localStorage.setItem('namespace-workflow-table-columns', JSON.stringify({
      default: ['Status', 'Workflow ID', 'FerryJob', 'FerryPhase', 'Start', 'End'].map((label) => ({ label })),
    }));
  });
  const page = await ctx.newPage();
  const shot = async (name) => {
    await page.waitForTimeout(1500); // let the UI finish its transitions
    await page.screenshot({ path: `${out}/${name}` });
    console.log(`wrote ${out}/${name}`);
  };

  // (a) the failed runs of a job
  await page.goto(list('FerryJob="docs" AND ExecutionStatus="Failed"'));
  await page.getByRole('link', { name: /^ferry-docs-/ }).first().waitFor();
  await shot('ui-failed-runs.png');

  // (c) why a run failed: its page shows the failure where a result would be
  await page.getByRole('link', { name: /^ferry-docs-/ }).first().click();
  await page.getByText(/is modified/).first().waitFor();
  await shot('ui-failed-run.png');

  // (c) again for a host that never answered: a shorter message
  await page.goto(list('FerryJob="offsite" AND ExecutionStatus="Failed"'));
  await page.getByRole('link', { name: /^ferry-offsite-/ }).first().click();
  await page.getByText(/did not pick up/).first().waitFor();
  await shot('ui-failed-host.png');

  // (b) a running stream: the timeline (the page's default view) names
  // each activity's host and step; the pending Receive's heartbeat details
  // carry the progress line
  await page.goto(list('FerryJob="photos" AND ExecutionStatus="Running"'));
  await page.getByRole('link', { name: /^ferry-photos-/ }).first().click();
  await page.getByText('Results will appear upon completion.').last().waitFor();
  await page.waitForTimeout(2000);
  await page.mouse.wheel(0, 400); // the timeline into view
  await shot('ui-running-timeline.png');
  await page.locator('#pending-activities-tab').click();
  await page.locator('p', { hasText: 'Heartbeat Details' }).first().waitFor();
  await shot('ui-running-progress.png');

  await browser.close();
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
