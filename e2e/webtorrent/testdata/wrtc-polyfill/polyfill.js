// Puts the WebRTC classes of @roamhq/wrtc on globalThis, like
// webrtc-polyfill/polyfill.
import wrtc from '@roamhq/wrtc'

for (const [key, value] of Object.entries(wrtc)) {
  globalThis[key] ??= value
}
