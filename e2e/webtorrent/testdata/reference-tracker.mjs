// reference-tracker.mjs runs bittorrent-tracker's own server, WebSocket
// only, on loopback: the reference the harness (client.mjs, transfer.mjs)
// is proven against.
//
//	node reference-tracker.mjs [--host 127.0.0.1] [--port 0] [--tls-cert cert.pem --tls-key key.pem]
//
// With a certificate it serves wss:// (bittorrent-tracker's command line
// has no TLS: the server's WebSocket endpoint is put on an https server
// here). It prints one JSON line, {"announce":"ws://127.0.0.1:PORT/announce"},
// once it listens, and runs until killed or until its standard input
// closes (the test that started it has gone).

import { readFileSync } from 'node:fs'
import https from 'node:https'
import { Server } from 'bittorrent-tracker'
import { options } from './common.mjs'

const opts = options(process.argv.slice(2), { host: '127.0.0.1', port: 0, 'tls-cert': '', 'tls-key': '' })
const tls = opts['tls-cert'] !== ''

let server, listening
if (tls) {
  server = new Server({ http: false, udp: false, ws: { noServer: true }, stats: false })
  const web = https.createServer({ cert: readFileSync(opts['tls-cert']), key: readFileSync(opts['tls-key']) })
  web.on('upgrade', (req, socket, head) => {
    server.ws.handleUpgrade(req, socket, head, ws => server.ws.emit('connection', ws, req))
  })
  web.on('request', (req, res) => {
    res.statusCode = 404
    res.end()
  })
  listening = new Promise((resolve, reject) => {
    web.once('error', reject)
    web.listen(opts.port, opts.host, () => resolve(web.address()))
  })
} else {
  server = new Server({ http: false, udp: false, ws: true, stats: false })
  listening = new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port, opts.host, () => resolve(server.http.address()))
  })
}
server.on('warning', err => console.error('tracker warning:', err.message))
server.on('error', err => console.error('tracker error:', err.message))

const addr = await listening
process.stdout.write(JSON.stringify({ announce: `${tls ? 'wss' : 'ws'}://${opts.host}:${addr.port}/announce` }) + '\n')
process.stdin.resume()
process.stdin.on('end', () => process.exit(0))
process.stdin.on('close', () => process.exit(0))
