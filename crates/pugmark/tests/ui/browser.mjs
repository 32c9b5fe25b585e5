// The web UI's browser driver for crates/pugmark/tests/ui.rs: playwright-core (npm, locked in
// tests/ui/npm, installed by scripts/test into $PUGMARK_NPM/playwright) driving Debian's
// chromium, headless. It only acts and reports what the page shows; the Rust test asserts.
//
// Usage: node browser.mjs < plan.json > observations.json
// plan: {"chromium": PATH, "base": "http://127.0.0.1:PORT", "artefacts": DIR,
//        "sessions": [{"name": S, "steps": [STEP, …]}, …]}   (one browser context per session)
// STEP (each may carry "shot": NAME → DIR/S-NAME.png, full page, and "read": {KEY: SELECTOR}):
//   {"op": "goto", "url": "/ui/…", "wait": SEL?}      SEL: wait for it (across reloads)
//   {"op": "login_token", "token": T}                 the login form, as a user would fill it
//   {"op": "login_oidc", "user": U, "password": P}    the OIDC button, then the provider's form
//   {"op": "click", "selector": SEL}                  click and wait for the navigation/fetch
//   {"op": "logout"}
//   {"op": "fill", "fields": {SEL: VALUE, …}}         type into inputs (no navigation)
//   {"op": "fetch", "url": U, "form": {K: V}?}        fetch() from the page (its cookies): GET,
//                                                     or POST of the form (urlencoded) with the
//                                                     session's csrf added from the page
// Observation per step: {"op", "url", "status", "title", "error", "read": {KEY: [texts]},
// "fetched": {"status", "type", "text"} for fetch}.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const plan = JSON.parse(fs.readFileSync(0, 'utf8'));
const browser = await chromium.launch({
  executablePath: plan.chromium,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const out = { sessions: {}, console_errors: [] };
try {
  for (const s of plan.sessions) {
    const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await ctx.newPage();
    page.on('console', (m) => { if (m.type() === 'error') out.console_errors.push(`${s.name}: ${m.text()}`); });
    page.on('pageerror', (e) => out.console_errors.push(`${s.name}: ${e.message}`));
    const obs = [];
    let last = null;
    for (const st of s.steps) {
      let error = null;
      let fetched = null;
      try {
        if (st.op === 'goto') {
          last = await page.goto(plan.base + st.url, { waitUntil: 'load' });
          // A page that reloads itself until its answer is there (the check page): wait for it.
          if (st.wait) await page.waitForSelector(st.wait, { timeout: 120000 });
        } else if (st.op === 'login_token') {
          last = await page.goto(plan.base + (st.next ? `/ui/login?next=${encodeURIComponent(st.next)}` : '/ui/login'));
          await page.fill('#token', st.token);
          [last] = await Promise.all([page.waitForNavigation(), page.click('form.token-login button')]);
        } else if (st.op === 'login_oidc') {
          last = await page.goto(plan.base + '/ui/login');
          await Promise.all([page.waitForSelector('input[name=login]'), page.click('a.oidc')]);
          await page.fill('input[name=login]', st.user);
          await page.fill('input[name=password]', st.password);
          await page.click('button');
          // The consent page, when the provider asks.
          await page.waitForLoadState('load');
          if (await page.$('form[action$="/confirm"]')) {
            await Promise.all([page.waitForURL((u) => u.pathname.startsWith('/ui/')), page.click('button')]);
          } else {
            await page.waitForURL((u) => u.pathname.startsWith('/ui/'));
          }
          last = null;
        } else if (st.op === 'click') {
          const nav = page.waitForNavigation({ timeout: 10000 }).catch(() => null);
          await page.click(st.selector);
          last = (await nav) || last;
          if (st.wait) await page.waitForSelector(st.wait);
        } else if (st.op === 'fill') {
          for (const [sel, v] of Object.entries(st.fields)) await page.fill(sel, v);
        } else if (st.op === 'fetch') {
          fetched = await page.evaluate(async ({ url, form }) => {
            const init = { credentials: 'same-origin', redirect: 'manual' };
            if (form) {
              const csrf = document.querySelector('input[name=csrf]');
              // A value "@SEL" is the value of the page's element SEL (e.g. a form's case id).
              for (const [k, v] of Object.entries(form)) {
                if (v.startsWith('@')) form[k] = document.querySelector(v.slice(1))?.value ?? '';
              }
              const body = new URLSearchParams(form);
              if (csrf && !body.has('csrf')) body.set('csrf', csrf.value);
              init.method = 'POST';
              init.body = body;
              init.redirect = 'follow';
            }
            const r = await fetch(url, init);
            return { status: r.status, type: r.headers.get('content-type'), text: (await r.text()).slice(0, 200000) };
          }, { url: st.url, form: st.form || null });
        } else if (st.op === 'logout') {
          [last] = await Promise.all([page.waitForNavigation(), page.click('form.logout button')]);
        }
      } catch (e) {
        error = String(e.message || e).split('\n')[0];
      }
      await page.waitForLoadState('load').catch(() => {});
      const read = {};
      for (const [k, sel] of Object.entries(st.read || {})) {
        read[k] = await page.$$eval(sel, (els) => els.map((e) => e.textContent.trim().replace(/\s+/g, ' '))).catch(() => []);
      }
      if (st.shot) {
        await page.screenshot({ path: path.join(plan.artefacts, `${s.name}-${st.shot}.png`), fullPage: true }).catch(() => {});
      }
      obs.push({
        op: st.op,
        url: page.url().replace(plan.base, ''),
        status: last ? last.status() : null,
        title: await page.title().catch(() => ''),
        error,
        read,
        fetched,
      });
    }
    out.sessions[s.name] = obs;
    await ctx.close();
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out));
