package bittorrent

// Family selects the address families of the peers an announce returns.
type Family uint8

const (
	AnyFamily Family = iota // IPv4 and IPv6 peers
	IPv4Only
	IPv6Only
)

// Stats are the counts of one swarm, as scrape reports them.
type Stats struct {
	Seeders    uint32 // peers with nothing left ("complete")
	Leechers   uint32 // peers still downloading ("incomplete")
	Downloaded uint32 // completed downloads ever counted ("downloaded")
}
