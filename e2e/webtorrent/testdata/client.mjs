// client.mjs drives bittorrent-tracker's own Client (the one webtorrent
// uses) against a WebSocket tracker, with WebRTC from @roamhq/wrtc:
//
//	node client.mjs --announce ws://127.0.0.1:6969/announce [--clients 3] [--timeout 60] [--expect-downloaded]
//	    [--announce-odd ws://127.0.0.1:7969/announce --settle 1000]
//
// With --announce-odd the clients of odd index announce there instead,
// another instance of a fleet serving the same swarms: the checks are the
// same, across instances. --settle waits that many milliseconds after
// each announce reply before the next client starts, the time the
// instances take to hear of the new peer.
//
// Each client runs in a process of its own, as each browser does: the
// Client shares one socket among all clients of a process that announce to
// the same URL, and a tracker binds a peer to its socket. The clients
// announce one fresh torrent, client 0 as a seeder, the others as
// leechers, one after the other. The checks, in order:
//
//  1. each announce gets its reply (complete, incomplete);
//  2. the offers each announce carries reach the clients already in the
//     swarm, and their answers come back: every pair of clients connects
//     over WebRTC (the Client's "peer", then the data channel's "connect")
//     and each sends the other a message over the data channel;
//  3. a scrape (of a list of two info hashes) counts 1 seeder and N-1
//     leechers;
//  4. client 1 sends "completed": 2 seeders, and with --expect-downloaded
//     the scrape's downloaded is 1 (bittorrent-tracker's server counts no
//     downloads: its scrape says downloaded = complete);
//  5. the last client (when N >= 3) sends "stopped" and closes: one
//     leecher fewer;
//  6. client 1 closes its socket without "stopped": the tracker drops it
//     as well.
//
// It prints one JSON line ({"ok":true,...} or {"ok":false,"error":...})
// and exits 0 only when every check passed within --timeout seconds.

import { fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { options, peerId, rtcConfig, Run, waitUntil } from './common.mjs'

const self = fileURLToPath(import.meta.url)

if (process.argv[2] === '--worker') {
  await worker(options(process.argv.slice(3), { announce: '', infohash: '', index: 0, left: 0 }))
} else {
  await controller(options(process.argv.slice(2), {
    announce: '', 'announce-odd': '', clients: 3, timeout: 60, settle: 0, 'expect-downloaded': false
  }))
}

// worker runs one Client in this process and obeys the controller's
// commands over the IPC channel, reporting what the Client emits.
async function worker (opts) {
  const { default: Client } = await import('bittorrent-tracker/client')
  const { default: wrtc } = await import('@roamhq/wrtc')
  const send = msg => process.send(msg)
  const id = peerId()
  let left = opts.left
  const client = new Client({
    infoHash: opts.infohash,
    peerId: id,
    announce: [opts.announce],
    port: 6881 + opts.index, // required by the Client in Node; a ws tracker ignores it
    wrtc,
    rtcConfig,
    getAnnounceOpts: () => ({ uploaded: 0, downloaded: 0, left, numwant: 5 })
  })
  client.on('error', err => send({ ev: 'error', message: String(err && err.message) }))
  client.on('warning', err => send({ ev: 'warning', message: String(err && err.message) }))
  client.on('update', data => send({ ev: 'update', complete: data.complete, incomplete: data.incomplete }))
  client.on('scrape', data => send({
    ev: 'scrape', infoHash: data.infoHash, complete: data.complete, incomplete: data.incomplete, downloaded: data.downloaded
  }))
  client.on('peer', peer => {
    // initiator: this client made the offer and the tracker brought the
    // answer; otherwise the tracker brought the other's offer.
    const kind = peer.initiator ? 'answer' : 'offer'
    send({ ev: 'relayed', kind, from: peer.id })
    peer.on('connect', () => {
      send({ ev: 'connected', with: peer.id })
      peer.send(JSON.stringify({ from: id.toString('hex') }))
    })
    peer.on('data', d => {
      let from
      try {
        from = JSON.parse(Buffer.from(d).toString()).from
      } catch {
        from = '(not JSON)'
      }
      send({ ev: 'data', peer: peer.id, from })
    })
    peer.on('error', err => send({ ev: 'peer-error', peer: peer.id, message: String(err && err.message) }))
  })
  process.on('message', msg => {
    switch (msg.cmd) {
      case 'start': client.start(); break
      case 'scrape': client.scrape({ infoHash: msg.infoHashes }); break
      case 'complete': left = 0; client.complete(); break
      case 'stop': client.stop(); break
      case 'destroy':
        client.destroy(() => process.send({ ev: 'destroyed' }, () => process.exit(0)))
        break
      default: send({ ev: 'error', message: `unknown command ${msg.cmd}` })
    }
  })
  process.on('disconnect', () => process.exit(0))
  send({ ev: 'ready', peerId: id.toString('hex') })
}

// controller runs the workers through the checks above.
async function controller (opts) {
  const run = new Run('client', opts.timeout)
  const n = opts.clients
  if (!opts.announce) return run.fail('--announce is required')
  if (!(n >= 2)) return run.fail('--clients must be at least 2')
  const infoHash = randomBytes(20).toString('hex')
  const other = randomBytes(20).toString('hex') // never announced
  Object.assign(run.result, { announce: opts.announce, clients: n, info_hash: infoHash, steps_ms: {} })
  if (opts['announce-odd']) run.result.announce_odd = opts['announce-odd']
  const step = name => { run.result.steps_ms[name] = run.ms() }

  const workers = []
  const warnings = []
  run.onEnd(() => { for (const w of workers) w.proc.kill('SIGKILL') })
  for (let i = 0; i < n; i++) {
    const w = {
      index: i,
      peerId: '',
      updates: [],
      scrapes: [],
      relayed: { offer: 0, answer: 0 },
      connected: new Set(),
      heardFrom: new Set(),
      destroyed: false,
      exited: false
    }
    const announce = i % 2 === 1 && opts['announce-odd'] ? opts['announce-odd'] : opts.announce
    w.proc = fork(self, ['--worker', '--announce', announce, '--infohash', infoHash,
      '--index', String(i), '--left', String(i === 0 ? 0 : 1 << 20)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    w.proc.on('message', msg => {
      switch (msg.ev) {
        case 'ready': w.peerId = msg.peerId; break
        case 'update': w.updates.push({ complete: msg.complete, incomplete: msg.incomplete }); break
        case 'scrape': w.scrapes.push(msg); break
        case 'relayed': w.relayed[msg.kind]++; break
        case 'connected': w.connected.add(msg.with); break
        case 'data':
          if (msg.from !== msg.peer) {
            run.fail(`client ${i}: peer ${msg.peer} says it is ${msg.from}`)
          }
          w.heardFrom.add(msg.from)
          break
        case 'destroyed': w.destroyed = true; break
        case 'error': run.fail(`client ${i}: ${msg.message}`); break
        case 'warning':
        case 'peer-error':
          warnings.push(`client ${i}: ${msg.ev}: ${msg.message}`)
          break
      }
    })
    w.proc.on('exit', (code, sig) => {
      w.exited = true
      if (!w.destroyed && !run.ended) run.fail(`client ${i} exited (code ${code}, signal ${sig})`)
    })
    workers.push(w)
  }
  run.result.warnings = warnings

  try {
    await waitUntil(run, 'the clients to load', () => workers.every(w => w.peerId !== ''))
    step('loaded')

    // 1, 2: announce one after the other; each new client's offers go to
    // those already there.
    for (const w of workers) {
      w.proc.send({ cmd: 'start' })
      await waitUntil(run, `client ${w.index}'s announce reply`, () => w.updates.length > 0)
      if (opts.settle > 0) await new Promise(resolve => setTimeout(resolve, opts.settle))
    }
    step('announced')
    const first = workers.map(w => w.updates[0])
    run.result.first_updates = first
    await waitUntil(run, 'every pair of clients to connect over WebRTC and exchange a message', () => {
      const missing = []
      for (const w of workers) {
        for (const o of workers) {
          if (o !== w && !w.heardFrom.has(o.peerId)) missing.push(`${w.index}<-${o.index}`)
        }
      }
      return missing.length === 0 || `no message yet on ${missing.join(', ')}`
    })
    step('connected')
    run.result.relayed = workers.map(w => w.relayed)
    // Client i's offers reached the i clients before it, which answered.
    for (const w of workers) {
      if (w.index > 0 && w.relayed.answer < w.index) {
        throw new Error(`client ${w.index} got ${w.relayed.answer} answers, want at least ${w.index}`)
      }
      if (w.index < n - 1 && w.relayed.offer < n - 1 - w.index) {
        throw new Error(`client ${w.index} got ${w.relayed.offer} offers, want at least ${n - 1 - w.index}`)
      }
    }

    // 3..6: scrapes as the swarm changes. scraper is client 0, which
    // stays to the end.
    const scraper = workers[0]
    const scrapes = []
    run.result.scrapes = scrapes
    const expectScrape = async (what, want) => {
      let last
      await waitUntil(run, `a scrape with ${what} (${JSON.stringify(want)})`, () => {
        const got = scraper.scrapes.filter(s => s.infoHash === infoHash)
        last = got[got.length - 1]
        if (last && last.complete === want.complete && last.incomplete === want.incomplete &&
            (!opts['expect-downloaded'] || last.downloaded === want.downloaded)) {
          return true
        }
        // Scrape again: the tracker may not have handled the last
        // event yet.
        if (!scraper.pending || Date.now() - scraper.pending > 250) {
          scraper.pending = Date.now()
          scraper.proc.send({ cmd: 'scrape', infoHashes: [infoHash, other] })
        }
        return `last scrape ${JSON.stringify(last)}`
      })
      scrapes.push({ what, complete: last.complete, incomplete: last.incomplete, downloaded: last.downloaded })
      step(what)
    }
    await expectScrape('all announced', { complete: 1, incomplete: n - 1, downloaded: 0 })
    const unknown = scraper.scrapes.filter(s => s.infoHash === other)
    if (unknown.some(s => s.complete || s.incomplete || s.downloaded)) {
      throw new Error(`the scrape counts peers of a torrent nobody announced: ${JSON.stringify(unknown)}`)
    }

    workers[1].proc.send({ cmd: 'complete' })
    await expectScrape('completed', { complete: 2, incomplete: n - 2, downloaded: 1 })

    if (n >= 3) {
      const last = workers[n - 1]
      last.proc.send({ cmd: 'stop' })
      await expectScrape('stopped', { complete: 2, incomplete: n - 3, downloaded: 1 })
      last.destroyed = true // it exits once destroyed
      last.proc.send({ cmd: 'destroy' })
      await waitUntil(run, `client ${n - 1} to close`, () => last.exited)
    }

    // Closed without "stopped": the tracker must notice the closed socket.
    workers[1].proc.kill('SIGKILL')
    workers[1].destroyed = true
    await expectScrape('socket closed', { complete: 1, incomplete: Math.max(n - 3, 0), downloaded: 1 })
  } catch (err) {
    return run.fail(err.message)
  }
  run.done()
}
