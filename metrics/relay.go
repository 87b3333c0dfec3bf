package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"trackd/fleet/relay"
)

func relayDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("trackd_ws_relay_"+name, help, nil, nil)
}

// relaySeries are the series trackd_ws_relay_* of the WebSocket relay
// across a fleet (relay.Stats), there only when sync and WebTorrent are on.
var relaySeries = []series[relay.Stats]{
	{relayDesc("instances", "Other instances of the fleet this one hears from (heartbeats), whose WebSocket peers it offers."), true, func(s *relay.Stats) float64 { return float64(s.Instances) }},
	{relayDesc("remote_peers", "WebSocket peers connected to other instances that this one holds (and counts in its WebTorrent swarms)."), true, func(s *relay.Stats) float64 { return float64(s.RemotePeers) }},
	{relayDesc("changes_sent_total", "Announces and leaves of local WebSocket peers broadcast to the other instances."), false, func(s *relay.Stats) float64 { return float64(s.ChangesSent) }},
	{relayDesc("changes_dropped_total", "Local changes dropped unsent, over the pending bound while the bus was unreachable."), false, func(s *relay.Stats) float64 { return float64(s.ChangesDropped) }},
	{relayDesc("changes_applied_total", "Changes of other instances' WebSocket peers applied here."), false, func(s *relay.Stats) float64 { return float64(s.ChangesApplied) }},
	{relayDesc("conflicts_total", "Changes of other instances refused because the peer id is bound here to another connection."), false, func(s *relay.Stats) float64 { return float64(s.Conflicts) }},
	{relayDesc("full_total", "Changes of other instances refused because the WebSocket swarms hold ws_max_peers."), false, func(s *relay.Stats) float64 { return float64(s.Full) }},
	{relayDesc("stale_total", "Hints and dumped peers skipped because a later change of the peer had come first."), false, func(s *relay.Stats) float64 { return float64(s.Stale) }},
	{relayDesc("relayed_total", "Offers and answers queued for peers connected to other instances."), false, func(s *relay.Stats) float64 { return float64(s.Relayed) }},
	{relayDesc("relay_dropped_total", "Offers and answers for other instances' peers refused: the instance's queue was full, it was gone, or the message too large."), false, func(s *relay.Stats) float64 { return float64(s.RelayDropped) }},
	{relayDesc("delivered_total", "Offers and answers from other instances handed to a local connection."), false, func(s *relay.Stats) float64 { return float64(s.Delivered) }},
	{relayDesc("undeliverable_total", "Offers and answers from other instances whose recipient is not connected here (left, expired) or whose connection refused them."), false, func(s *relay.Stats) float64 { return float64(s.Undeliverable) }},
	{relayDesc("dumps_total", "Times this instance sent all its local WebSocket peers to another (one it had not heard from, or that asked)."), false, func(s *relay.Stats) float64 { return float64(s.Dumps) }},
	{relayDesc("dumped_peers_total", "Peers those dumps carried."), false, func(s *relay.Stats) float64 { return float64(s.DumpedPeers) }},
	{relayDesc("send_errors_total", "Sends to the bus that failed; what they carried is lost."), false, func(s *relay.Stats) float64 { return float64(s.SendErrors) }},
	{relayDesc("invalid_total", "Relay messages received that did not parse, skipped."), false, func(s *relay.Stats) float64 { return float64(s.Invalid) }},
	{relayDesc("foreign_total", "Messages received that are not the relay's (another user of the bus), ignored."), false, func(s *relay.Stats) float64 { return float64(s.Foreign) }},
	{relayDesc("instances_gone_total", "Other instances dropped: timed out or said goodbye; their peers left the swarms here."), false, func(s *relay.Stats) float64 { return float64(s.InstancesGone) }},
	{relayDesc("too_many_instances_total", "Messages from an unknown instance ignored because the bound of instances known was reached."), false, func(s *relay.Stats) float64 { return float64(s.TooManyInstances) }},
}
