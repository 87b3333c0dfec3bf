// Helpers shared by client.mjs and transfer.mjs: command-line options, a
// deadline for the whole run, and the one JSON result line each script
// prints on stdout (the Go tests parse it).

import { randomBytes } from 'node:crypto'

// options parses --name value pairs (and bare --flag) from argv into an
// object, with defaults.
export function options (argv, defaults) {
  const opts = { ...defaults }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`)
    const name = a.slice(2)
    if (!(name in defaults)) throw new Error(`unknown option ${a}`)
    if (typeof defaults[name] === 'boolean') {
      opts[name] = true
    } else {
      if (i + 1 >= argv.length) throw new Error(`option ${a} needs a value`)
      const v = argv[++i]
      opts[name] = typeof defaults[name] === 'number' ? Number(v) : v
    }
  }
  return opts
}

// rtcConfig is the RTCPeerConnection configuration of every peer here: no
// STUN or TURN server (simple-peer's default names public ones), so that
// WebRTC gathers host candidates only and sends nothing off the machine.
export const rtcConfig = { iceServers: [] }

// peerId is a fresh 20-byte peer id in Azureus style with random bytes
// after the prefix: bytes 0x80-0xff too, which the tracker must carry as
// "binary string" characters U+0080-U+00FF both ways.
export function peerId (prefix = '-TD0001-') {
  return Buffer.concat([Buffer.from(prefix, 'latin1'), randomBytes(20 - prefix.length)])
}

// Run is one script run: it measures time since start, collects the
// result's fields and ends the process with a JSON line and an exit code
// at done(), at fail(), or when the deadline passes.
export class Run {
  constructor (name, timeoutSec) {
    this.name = name
    this.start = Date.now()
    this.result = { script: name }
    this.ended = false
    this.deadline = this.start + timeoutSec * 1000
    // A step that waits gives up a second before the run does, so that
    // the error names the step.
    this.stepDeadline = this.deadline - 1000
    // stage says what the run waits for, in the timeout's error.
    this.stage = 'starting'
    this.timer = setTimeout(() => this.fail(`timed out after ${timeoutSec}s ${this.stage}`), timeoutSec * 1000)
    this.cleanups = []
    process.on('uncaughtException', err => this.fail(`uncaught: ${err && err.stack ? err.stack : err}`))
    process.on('unhandledRejection', err => this.fail(`unhandled rejection: ${err && err.stack ? err.stack : err}`))
  }

  // ms is the time since the run started, in milliseconds.
  ms () { return Date.now() - this.start }

  // onEnd registers fn to run (best effort, synchronously) before exit.
  onEnd (fn) { this.cleanups.push(fn) }

  done () { this._end(true) }

  fail (why) {
    this.result.error = String(why)
    this._end(false)
  }

  _end (ok) {
    if (this.ended) return
    this.ended = true
    clearTimeout(this.timer)
    for (const fn of this.cleanups) {
      try { fn() } catch {}
    }
    this.result.ok = ok
    this.result.elapsed_ms = this.ms()
    process.stdout.write(JSON.stringify(this.result) + '\n', () => process.exit(ok ? 0 : 1))
  }
}

// waitUntil resolves when cond() is true, checking every intervalMs, or
// rejects with what (and cond's last explanation, if it returns a string
// when false) when the run's deadline passes.
export function waitUntil (run, what, cond, intervalMs = 50) {
  return new Promise((resolve, reject) => {
    const check = () => {
      let r
      try {
        r = cond()
      } catch (err) {
        reject(err)
        return
      }
      if (r === true) {
        resolve()
        return
      }
      if (Date.now() >= run.stepDeadline) {
        reject(new Error(`waiting for ${what}${typeof r === 'string' ? ': ' + r : ''}`))
        return
      }
      setTimeout(check, intervalMs)
    }
    check()
  })
}
