// webrtc-polyfill's exports, from @roamhq/wrtc. package.json's "overrides"
// put this package in the place of webrtc-polyfill, which
// @thaunknown/simple-peer (and so webtorrent and bittorrent-tracker's
// client) imports.
import wrtc from '@roamhq/wrtc'

export const {
  RTCPeerConnection,
  RTCSessionDescription,
  RTCIceCandidate,
  RTCDataChannel,
  MediaStream
} = wrtc

export default wrtc
