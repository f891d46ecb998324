// Package sink is an embedded, in-process InfluxDB-compatible write sink: the
// `embedded` target of `loadcap run` and the server behind `loadcap sink`.
//
// It serves the three InfluxDB write paths
//
//	POST /write?db=D[&rp=R][&precision=P][&u=U&p=P]     InfluxDB 1.x
//	POST /api/v2/write?org=O&bucket=B[&precision=P]     InfluxDB 2.x
//	POST /api/v3/write_lp?db=D[&precision=P]            InfluxDB 3
//
// plus GET|HEAD /ping (204 with an X-Influxdb-Version header) and GET /health.
// Every body (optionally `Content-Encoding: gzip`) is decoded line by line
// with the lineprotocol.Decoder: the measurement, every tag, every field value
// and the timestamp at the requested precision. A body with a bad line is
// answered 400 with an InfluxDB-style JSON error ({"error":"..."} on v1,
// {"code":"invalid","message":"..."} on v2 and v3); as InfluxDB does, the good
// lines of such a batch are still counted as stored.
//
// The sink counts requests, writes, lines, bytes, bad requests, injected
// errors and accepted TCP connections, per write path and in total, with
// atomic counters only (no lock on the request path). Bodies are read into
// pooled buffers and decoded without any per-line allocation.
//
// For tests and demonstrations it injects faults: a fixed latency per write
// (Options.Latency), a deterministic fraction of writes answered 500
// (Options.ErrorRate with Options.Seed), and any behaviour a test cares to add
// through Options.Intercept.
//
// A minimal use:
//
//	s, err := sink.Start("127.0.0.1:0", sink.Options{})
//	if err != nil { ... }
//	defer s.Close()
//	url := s.URL() + "/write?db=loadcap"
//	...
//	fmt.Println(s.Stats().Lines)
package sink
