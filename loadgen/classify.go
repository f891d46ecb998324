package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/loadcap/loadcap/results"
)

// Error classes. Connection errors are named after their errno, as the
// kernel reports them, so that a result says exactly which limit was hit.
// The classes a result's readers judge by name are defined in results.
const (
	ClassEADDRNOTAVAIL = results.ClassEADDRNOTAVAIL // connect(): no free local port toward this destination
	ClassEADDRINUSE    = results.ClassEADDRINUSE    // bind(): the shared port pool is used up
	ClassECONNREFUSED  = "ECONNREFUSED"
	ClassECONNRESET    = "ECONNRESET"
	ClassETIMEDOUT     = "ETIMEDOUT"
	ClassEMFILE        = "EMFILE"
	ClassENFILE        = "ENFILE"
	ClassEPIPE         = "EPIPE"
	ClassEHOSTUNREACH  = "EHOSTUNREACH"
	ClassENETUNREACH   = "ENETUNREACH"
	ClassTimeout       = results.ClassTimeout // loadcap's own write timeout fired
	ClassEOF           = "EOF"                // the server closed the connection mid-exchange
	ClassHTTP4xx       = "http_4xx"           // status 400..499
	ClassHTTP5xx       = "http_5xx"           // status 500..599
	ClassHTTPOther     = "http_other"         // any other non-2xx status
	ClassProtocol      = "protocol"           // a malformed response
	ClassTLS           = "tls"
	ClassNotStarted    = results.ClassNotStarted // the run ended before a worker could start the write
	ClassCancelled     = "cancelled"             // interrupted in flight
	ClassPanic         = "panic"                 // a driver crashed; recorded, not fatal
	ClassSQL           = "sql"                   // a SQL error without a more precise SQLSTATE class
	ClassOther         = "other"
)

// classes lists every class with a fixed index so that per-worker counters
// can be plain arrays (see recorder). SQLSTATE classes are counted in the
// "sql" slot and also by code in Result.Code.
var classes = []string{
	ClassEADDRNOTAVAIL, ClassEADDRINUSE, ClassECONNREFUSED, ClassECONNRESET,
	ClassETIMEDOUT, ClassEMFILE, ClassENFILE, ClassEPIPE, ClassEHOSTUNREACH,
	ClassENETUNREACH, ClassTimeout, ClassEOF, ClassHTTP4xx, ClassHTTP5xx,
	ClassHTTPOther, ClassProtocol, ClassTLS, ClassNotStarted, ClassCancelled,
	ClassPanic, ClassSQL, ClassOther,
}

var classIndex = func() map[string]int {
	m := make(map[string]int, len(classes))
	for i, c := range classes {
		m[c] = i
	}
	return m
}()

// Classes returns the fixed list of error classes loadcap counts.
func Classes() []string { return append([]string(nil), classes...) }

// Classify names the class of a connection or I/O error.
func Classify(err error) string {
	if err == nil {
		return ""
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.EADDRNOTAVAIL:
			return ClassEADDRNOTAVAIL
		case syscall.EADDRINUSE:
			return ClassEADDRINUSE
		case syscall.ECONNREFUSED:
			return ClassECONNREFUSED
		case syscall.ECONNRESET:
			return ClassECONNRESET
		case syscall.ETIMEDOUT:
			return ClassETIMEDOUT
		case syscall.EMFILE:
			return ClassEMFILE
		case syscall.ENFILE:
			return ClassENFILE
		case syscall.EPIPE:
			return ClassEPIPE
		case syscall.EHOSTUNREACH:
			return ClassEHOSTUNREACH
		case syscall.ENETUNREACH:
			return ClassENETUNREACH
		}
	}
	if errors.Is(err, context.Canceled) {
		return ClassCancelled
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ETIMEDOUT) {
		return ClassTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ClassTimeout
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return ClassEOF
	}
	var re tls.RecordHeaderError
	var ce *tls.CertificateVerificationError
	if errors.As(err, &re) || errors.As(err, &ce) {
		return ClassTLS
	}
	return ClassOther
}

// StatusClass names the class of a non-2xx HTTP status.
func StatusClass(code int) string {
	switch {
	case code >= 400 && code < 500:
		return ClassHTTP4xx
	case code >= 500 && code < 600:
		return ClassHTTP5xx
	}
	return ClassHTTPOther
}
