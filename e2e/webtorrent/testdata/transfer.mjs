// transfer.mjs: a real WebTorrent transfer through one WebSocket tracker.
//
//	node transfer.mjs --announce ws://127.0.0.1:6969/announce [--size 4194304] [--timeout 120]
//
// This process seeds --size bytes of random data with webtorrent; a second
// process (this script again, with --download, as a second browser would
// be: a tracker binds a peer to its socket) downloads it. The torrent's
// announce list is the given URL alone, and every other way to find peers
// is off (DHT, local peer discovery, uTP, NAT traversal, web seeds, and
// no STUN server), so the two find each other only through the tracker's
// relay of offers and answers, and connect over WebRTC (@roamhq/wrtc). It
// checks that the downloaded bytes have the seeded data's SHA-256 and that
// every peer connection was WebRTC, prints one JSON line and exits 0 only
// when all of that happened within --timeout seconds.

import { fork } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { options, rtcConfig, Run } from './common.mjs'

const self = fileURLToPath(import.meta.url)
const download = process.argv[2] === '--download'
const opts = download
  ? options(process.argv.slice(3), { announce: '' })
  : options(process.argv.slice(2), { announce: '', size: 4 << 20, timeout: 120 })

const { default: WebTorrent } = await import('webtorrent')
const { default: wrtc } = await import('@roamhq/wrtc')

// newClient is a webtorrent client that finds peers only through the
// torrent's trackers.
function newClient () {
  return new WebTorrent({
    dht: false,
    lsd: false,
    utp: false,
    natUpnp: false,
    natPmp: false,
    webSeeds: false,
    tracker: { rtcConfig, wrtc }
  })
}

// checkAnnounce throws unless the torrent announces to url alone.
function checkAnnounce (torrent, url) {
  const list = torrent.announce
  if (list.length !== 1 || list[0] !== url) {
    throw new Error(`the torrent announces to ${JSON.stringify(list)}, want [${JSON.stringify(url)}] alone`)
  }
}

const sha256 = b => createHash('sha256').update(b).digest('hex')

if (download) {
  await downloader()
} else {
  await seeder()
}

// downloader gets the .torrent from the seeder over IPC, downloads it and
// reports the data's hash and its peers' connection types.
async function downloader () {
  const dir = mkdtempSync(join(tmpdir(), 'trackd-wt-dl-'))
  const client = newClient()
  const send = msg => process.send(msg)
  const fail = err => {
    send({ ev: 'error', message: String(err && err.stack ? err.stack : err) })
    process.exit(1)
  }
  client.on('error', fail)
  process.on('disconnect', () => {
    rmSync(dir, { recursive: true, force: true })
    process.exit(0)
  })
  process.once('message', msg => {
    const start = Date.now()
    const torrent = client.add(Buffer.from(msg.torrent, 'base64'), { path: dir })
    torrent.on('warning', err => send({ ev: 'warning', message: String(err && err.message) }))
    torrent.on('error', fail)
    torrent.on('wire', wire => send({ ev: 'wire', type: wire.type }))
    torrent.on('done', async () => {
      try {
        checkAnnounce(torrent, opts.announce)
        const data = Buffer.from(await torrent.files[0].arrayBuffer())
        send({
          ev: 'done',
          bytes: data.length,
          sha256: sha256(data),
          download_ms: Date.now() - start,
          wires: torrent.wires.map(w => w.type)
        })
      } catch (err) {
        fail(err)
      }
    })
  })
  send({ ev: 'ready' })
}

async function seeder () {
  const run = new Run('transfer', opts.timeout)
  if (!opts.announce) return run.fail('--announce is required')
  const dir = mkdtempSync(join(tmpdir(), 'trackd-wt-seed-'))
  const data = randomBytes(opts.size)
  const want = sha256(data)
  Object.assign(run.result, { announce: opts.announce, bytes: data.length, sha256: want, warnings: [] })
  const warn = (who, err) => run.result.warnings.push(`${who}: ${err && err.message ? err.message : err}`)

  const client = newClient()
  let child
  run.onEnd(() => {
    if (child) child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  })
  client.on('error', err => run.fail(`seeder: ${err.message}`))

  run.stage = 'seeding'
  let seeded
  const ready = new Promise((resolve, reject) => { seeded = { resolve, reject } })
  const torrent = client.seed(data, { name: 'trackd-webtorrent-e2e.bin', announce: [opts.announce], path: dir }, seeded.resolve)
  torrent.on('error', seeded.reject)
  // The seeder's first announce reply, which may come before the seeding
  // has started: it is in the swarm, so the downloader's offers reach it.
  const announced = new Promise(resolve => torrent.once('trackerAnnounce', resolve))
  try {
    await ready
  } catch (err) {
    return run.fail(`seeder: ${err.message}`)
  }
  try {
    checkAnnounce(torrent, opts.announce)
  } catch (err) {
    return run.fail(err.message)
  }
  torrent.on('warning', err => warn('seeder', err))
  run.result.info_hash = torrent.infoHash
  run.result.seeded_ms = run.ms()
  run.stage = "waiting for the seeder's first announce reply"
  await announced
  run.result.seeder_announced_ms = run.ms()

  run.stage = 'waiting for the downloader to start'
  child = fork(self, ['--download', '--announce', opts.announce], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  child.on('exit', (code, sig) => run.fail(`the downloader exited (code ${code}, signal ${sig})`))
  child.on('message', msg => {
    switch (msg.ev) {
      case 'ready':
        run.result.downloader_loaded_ms = run.ms()
        child.send({ torrent: Buffer.from(torrent.torrentFile).toString('base64') })
        run.stage = 'waiting for the downloader to connect to the seeder'
        break
      case 'warning': warn('downloader', msg.message); break
      case 'wire':
        if (run.result.first_wire_ms === undefined) run.result.first_wire_ms = run.ms()
        run.stage = 'downloading'
        break
      case 'error': run.fail(`downloader: ${msg.message}`); break
      case 'done': {
        Object.assign(run.result, {
          received_bytes: msg.bytes,
          received_sha256: msg.sha256,
          download_ms: msg.download_ms,
          downloader_wires: msg.wires,
          seeder_wires: torrent.wires.map(w => w.type)
        })
        if (msg.bytes !== data.length || msg.sha256 !== want) {
          return run.fail(`received ${msg.bytes} bytes with SHA-256 ${msg.sha256}, want ${data.length} bytes with ${want}`)
        }
        const types = [...msg.wires, ...run.result.seeder_wires]
        if (msg.wires.length === 0 || types.some(t => t !== 'webrtc')) {
          return run.fail(`peer connections ${JSON.stringify(types)}, want WebRTC ones only`)
        }
        run.done()
      }
    }
  })
}
