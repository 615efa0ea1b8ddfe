package bench

// metric is one figure the harness produces; with a front it names a row.
type metric int

const (
	mBulkDown1 metric = iota
	mBulkUp1
	mBulkDownN
	mBulkUpN
	mCPUPerGiB
	mNewRate
	mNewP50
	mNewP99
	mCPUPer1000
	mRTTP50
	mRTTP99
	mRTTAdded
	mFwdRate
	mFwdP50
	mFwdP99
	mTLSRate
	mTLSP50
	mTLSP99
	mTLSCPU
	mTLSNewRate
	mTLSNewP50
	mIdleKiB
	mIdleFDs
	mIdleOpen
	numMetrics
)

type metricInfo struct {
	scenario string // Options.Scenarios name that produces it
	key      string // stable row key prefix
	title    string // %d is replaced by the bulk stream count
	unit     string
	lower    bool // lower is better
	process  bool // a figure of the proxy process: no direct value
	forward  bool // HTTP forward scenario: one row, not one per front
	derived  bool // computed from other rows, not measured
}

var metrics = [numMetrics]metricInfo{
	mBulkDown1:  {scenario: "bulk", key: "bulk-down-1", title: "bulk download, 1 tunnel", unit: "Gbit/s"},
	mBulkUp1:    {scenario: "bulk", key: "bulk-up-1", title: "bulk upload, 1 tunnel", unit: "Gbit/s"},
	mBulkDownN:  {scenario: "bulk", key: "bulk-down-n", title: "bulk download, {n} tunnels", unit: "Gbit/s"},
	mBulkUpN:    {scenario: "bulk", key: "bulk-up-n", title: "bulk upload, {n} tunnels", unit: "Gbit/s"},
	mCPUPerGiB:  {scenario: "bulk", key: "cpu-gib", title: "relay CPU per GiB (all bulk runs)", unit: "s", lower: true, process: true},
	mNewRate:    {scenario: "new", key: "new-rate", title: "new tunnels per second, c={c}", unit: "tunnels/s"},
	mNewP50:     {scenario: "new", key: "new-p50", title: "new tunnel time p50", unit: "µs", lower: true},
	mNewP99:     {scenario: "new", key: "new-p99", title: "new tunnel time p99", unit: "µs", lower: true},
	mCPUPer1000: {scenario: "new", key: "cpu-1000", title: "relay CPU per 1,000 new tunnels", unit: "s", lower: true, process: true},
	mRTTP50:     {scenario: "rtt", key: "rtt-p50", title: "64 B echo round trip p50", unit: "µs", lower: true},
	mRTTP99:     {scenario: "rtt", key: "rtt-p99", title: "64 B echo round trip p99", unit: "µs", lower: true},
	mRTTAdded:   {scenario: "rtt", key: "rtt-added", title: "round trip added to direct, p50", unit: "µs", lower: true, process: true, derived: true},
	mFwdRate:    {scenario: "forward", key: "fwd-rate", title: "HTTP requests per second, {f} keep-alive conns", unit: "req/s", forward: true},
	mFwdP50:     {scenario: "forward", key: "fwd-p50", title: "HTTP request time p50", unit: "µs", lower: true, forward: true},
	mFwdP99:     {scenario: "forward", key: "fwd-p99", title: "HTTP request time p99", unit: "µs", lower: true, forward: true},
	mTLSRate:    {scenario: "tls", key: "tls-rate", title: "HTTPS requests per second, {f} keep-alive conns", unit: "req/s"},
	mTLSP50:     {scenario: "tls", key: "tls-p50", title: "HTTPS request time p50", unit: "µs", lower: true},
	mTLSP99:     {scenario: "tls", key: "tls-p99", title: "HTTPS request time p99", unit: "µs", lower: true},
	mTLSCPU:     {scenario: "tls", key: "tls-cpu-1000", title: "proxy CPU per 1,000 HTTPS requests (keep-alive)", unit: "s", lower: true, process: true},
	mTLSNewRate: {scenario: "tls", key: "tls-new-rate", title: "new HTTPS connections per second, c={c}", unit: "conns/s"},
	mTLSNewP50:  {scenario: "tls", key: "tls-new-p50", title: "new HTTPS connection time p50 (tunnel, handshake, GET)", unit: "µs", lower: true},
	mIdleKiB:    {scenario: "idle", key: "idle-kib", title: "memory per idle tunnel at {i} open", unit: "KiB", lower: true, process: true},
	mIdleFDs:    {scenario: "idle", key: "idle-fds", title: "descriptors per idle tunnel", unit: "fds", lower: true, process: true},
	mIdleOpen:   {scenario: "idle", key: "idle-open", title: "idle tunnels held (of {i}; 20,000 descriptors per process)", unit: "tunnels", process: true},
}
