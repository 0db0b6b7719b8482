// Segment's browser SDK (@segment/analytics-next, from node_modules, unchanged)
// on a storefront page served from another origin, in the system's Chromium
// driven by Playwright, against a fresh `omnihub serve`. Checks that every call
// reaches the hub (one at a time and in batching mode), that the anonymous
// visitor and the identified user end on one profile, and that a browser
// EventSource can follow the live stream with a short-lived stream token.
//
// Environment: OMNIHUB_BIN (default ../../target/debug/omnihub),
// CHROMIUM (default /usr/bin/chromium). Nothing is downloaded.
//
//   node sdk.test.mjs

import { spawn, execFileSync } from 'node:child_process'
import { createServer } from 'node:http'
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname, normalize } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const here = dirname(fileURLToPath(import.meta.url))
const bin = process.env.OMNIHUB_BIN ?? join(here, '../../target/debug/omnihub')
const browserPath = process.env.CHROMIUM ?? '/usr/bin/chromium'
const sdkDir = join(here, 'node_modules/@segment/analytics-next/dist/umd')
const DEADLINE_MS = 20_000

let failures = 0
function check(condition, what) {
  if (condition) {
    console.log(`ok   ${what}`)
  } else {
    failures += 1
    console.log(`FAIL ${what}`)
  }
}

async function waitFor(what, probe) {
  const started = Date.now()
  for (;;) {
    const value = await probe()
    if (value) return value
    if (Date.now() - started > DEADLINE_MS) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

// ---------------------------------------------------------------- the hub

const dataDir = mkdtempSync(join(tmpdir(), 'omnihub-browser-'))
const hubArgs = ['--data-dir', dataDir, '--listen', '127.0.0.1:0', '--log-level', 'warn']
const hub = spawn(bin, [...hubArgs, 'serve'], { stdio: ['ignore', 'pipe', 'inherit'] })
const hubBase = await new Promise((resolve, reject) => {
  let seen = ''
  hub.stdout.on('data', (chunk) => {
    seen += chunk
    const match = /listening on (http:\/\/\S+)/.exec(seen)
    if (match) resolve(match[1])
  })
  hub.on('exit', (code) => reject(new Error(`omnihub serve exited with ${code}: ${seen}`)))
})
const adminKey = execFileSync(bin, [...hubArgs, 'keys', 'create', '--scopes', 'admin'], {
  encoding: 'utf8',
  stdio: ['ignore', 'pipe', 'ignore'],
}).trim()

async function api(method, path, body, key = adminKey) {
  const response = await fetch(hubBase + path, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await response.text()
  return { status: response.status, body: text ? JSON.parse(text) : null }
}

const channel = await api('POST', '/v1/channels', { kind: 'web', name: 'Storefront' })
const writeKey = (
  await api('POST', '/v1/keys', {
    channel_id: channel.body.id,
    name: 'browser write key',
    scopes: ['events:write'],
  })
).body.secret
const readKey = (
  await api('POST', '/v1/keys', {
    channel_id: channel.body.id,
    name: 'storefront backend',
    scopes: ['events:read'],
  })
).body.secret
// The storefront's backend (a trusted key) vouches for logins: the browser
// key is public, so its identify joins the visitor to the user only with a
// login token the backend minted for that user.
const backendKey = (
  await api('POST', '/v1/keys', {
    channel_id: channel.body.id,
    name: 'storefront login backend',
    scopes: ['customers:write'],
  })
).body.secret
async function loginToken(userId, email) {
  const minted = await api('POST', '/v1/identity/tokens', { user_id: userId, email }, backendKey)
  if (minted.status !== 201) throw new Error(`login token: ${minted.status} ${JSON.stringify(minted.body)}`)
  return minted.body.token
}
const adaToken = await loginToken('browser-user-1', 'ada@example.com')
const user2Token = await loginToken('browser-user-2')

// ------------------------------------------------- the storefront (another origin)

const page = (strategy) => `<!doctype html>
<html><head><title>Storefront</title>
<script>window.analytics = { _cdn: location.origin }</script>
<script src="/analytics-next/bundles/index.js"></script>
</head><body>
<script>
  const hub = ${JSON.stringify(hubBase.replace(/^http:\/\//, ''))}
  window.analyticsBrowser = AnalyticsNext.AnalyticsBrowser.load({
    writeKey: ${JSON.stringify(writeKey)},
    cdnSettings: {
      integrations: {
        'Segment.io': {
          apiKey: ${JSON.stringify(writeKey)},
          apiHost: hub + '/v1',
          protocol: 'http',
          ${strategy === 'batching' ? "deliveryStrategy: { strategy: 'batching', config: { size: 5, timeout: 500 } }," : ''}
        },
      },
    },
  })
</script>
</body></html>`

const storefront = createServer((request, response) => {
  const url = new URL(request.url, 'http://storefront')
  if (url.pathname === '/' || url.pathname === '/batching') {
    response.writeHead(200, { 'content-type': 'text/html' })
    response.end(page(url.pathname === '/' ? 'each' : 'batching'))
    return
  }
  const prefix = '/analytics-next/bundles/'
  if (url.pathname.startsWith(prefix)) {
    const file = normalize(join(sdkDir, url.pathname.slice(prefix.length)))
    if (file.startsWith(sdkDir) && existsSync(file)) {
      response.writeHead(200, { 'content-type': 'text/javascript' })
      response.end(readFileSync(file))
      return
    }
  }
  response.writeHead(404)
  response.end()
})
await new Promise((resolve) => storefront.listen(0, '127.0.0.1', resolve))
// `localhost` vs the hub's `127.0.0.1`, and another port: another origin.
const storefrontBase = `http://localhost:${storefront.address().port}`

// ---------------------------------------------------------------- the browser

const browser = await chromium.launch({ executablePath: browserPath, args: ['--no-sandbox'] })
try {
  const context = await browser.newContext()
  const hubRequests = []
  const outside = []
  context.on('request', (request) => {
    const url = request.url()
    if (url.startsWith(hubBase)) hubRequests.push(`${request.method()} ${new URL(url).pathname}`)
  })
  // Nothing leaves the machine (no Segment CDN, no api.segment.io).
  await context.route(
    (url) => !['localhost', '127.0.0.1'].includes(url.hostname),
    (route) => {
      outside.push(route.request().url())
      return route.abort()
    },
  )
  const tab = await context.newPage()
  const consoleErrors = []
  tab.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text())
  })

  // 1. One call at a time: /v1/p, /v1/t, /v1/i, /v1/g, /v1/a.
  await tab.goto(storefrontBase + '/')
  await tab.evaluate(async (identityToken) => {
    const analytics = window.analyticsBrowser
    await analytics.page('Home')
    await analytics.track('Product Viewed', { sku: 'TEE-1' })
    await analytics.identify(
      'browser-user-1',
      { email: 'ada@example.com', name: 'Ada' },
      { context: { identityToken } },
    )
    await analytics.group('acme', { name: 'Acme' })
    await analytics.alias('browser-user-1-alias', 'browser-user-1')
  }, adaToken)
  const profile = await waitFor('the identified user', async () => {
    const found = await api(
      'GET',
      '/v1/customers?identifier=' + encodeURIComponent('user_id:browser-user-1'),
    )
    const item = found.body?.items?.find((i) => i.match === 'member')
    return item?.id
  })
  const timeline = await waitFor('5 calls on the timeline', async () => {
    const t = await api('GET', `/v1/customers/${profile}/timeline?limit=200`)
    return t.body.items.length >= 5 ? t.body.items : null
  })
  const kinds = timeline.map((i) => i.type).sort()
  check(
    JSON.stringify(kinds) === JSON.stringify(['alias', 'group', 'identify', 'page', 'track']),
    `the 5 calls of the SDK landed on one profile (anonymous page view and track merged into the user): ${kinds}`,
  )
  for (const path of ['/v1/p', '/v1/t', '/v1/i', '/v1/g', '/v1/a']) {
    check(hubRequests.includes(`POST ${path}`), `the SDK posted to ${path}`)
  }
  const customer = await api('GET', `/v1/customers/${profile}`)
  check(customer.body.traits?.email?.value === 'ada@example.com', 'the identify traits are on the profile')

  // 2. Batching mode: /v1/b.
  await tab.goto(storefrontBase + '/batching')
  await tab.evaluate(async (identityToken) => {
    const analytics = window.analyticsBrowser
    analytics.identify('browser-user-2', {}, { context: { identityToken } })
    analytics.track('Added to Cart', { sku: 'TEE-1' })
    analytics.track('Checkout Started')
    await new Promise((resolve) => setTimeout(resolve, 1500))
  }, user2Token)
  const batched = await waitFor('the batched calls', async () => {
    const found = await api(
      'GET',
      '/v1/customers?identifier=' + encodeURIComponent('user_id:browser-user-2'),
    )
    const id = found.body?.items?.find((i) => i.match === 'member')?.id
    if (!id) return null
    const t = await api('GET', `/v1/customers/${id}/timeline?limit=200`)
    return t.body.items.length >= 3 ? t.body.items : null
  })
  check(batched.length === 3, `the batching mode delivered 3 calls through /v1/b (${batched.length})`)
  check(hubRequests.includes('POST /v1/b'), 'the SDK posted to /v1/b')

  // 3. The live stream from the page: a backend mints a token, the browser's
  //    EventSource (which cannot send headers) passes it in the query string.
  const minted = await api('POST', '/v1/stream/tokens', { ttl_seconds: 300 }, readKey)
  check(minted.status === 201, `a stream token is minted by an events:read key (${minted.status})`)
  if (minted.status === 201) {
    const received = tab.evaluate(
      ({ url }) =>
        new Promise((resolve, reject) => {
          const source = new EventSource(url)
          source.onmessage = () => {}
          source.addEventListener('customer.created', (event) => {
            source.close()
            resolve(JSON.parse(event.data))
          })
          setTimeout(() => reject(new Error('no event on the stream')), 15000)
        }),
      { url: `${hubBase}/v1/stream?types=customer.*&token=${encodeURIComponent(minted.body.token)}` },
    )
    await new Promise((resolve) => setTimeout(resolve, 500))
    await fetch(hubBase + '/v1/identify', {
      method: 'POST',
      headers: { authorization: `Bearer ${writeKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ userId: 'stream-user' }),
    })
    try {
      const event = await received
      check(event.type === 'customer.created', 'the page followed the live stream with a stream token')
    } catch (error) {
      check(false, `the page followed the live stream with a stream token: ${error.message}`)
    }
  }

  check(outside.length === 0, `no request left the machine: ${outside.join(', ')}`)
  const corsErrors = consoleErrors.filter((e) => /CORS|Access-Control/i.test(e))
  check(corsErrors.length === 0, `no CORS error in the console: ${corsErrors.join(' | ')}`)
} finally {
  await browser.close()
  storefront.close()
  hub.kill('SIGTERM')
  await new Promise((resolve) => hub.on('exit', resolve))
  rmSync(dataDir, { recursive: true, force: true })
}

console.log(failures === 0 ? 'browser SDK test: all checks passed' : `browser SDK test: ${failures} failed`)
process.exit(failures === 0 ? 0 : 1)
