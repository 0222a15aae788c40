package activities

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestReceiveProgressLine(t *testing.T) {
	p := ReceiveProgress{Bytes: 1 << 30, Expected: 4 << 30, Rate: 48 << 20}
	require.Equal(t, time.Minute+4*time.Second, p.ETA())
	require.Equal(t, "1.0 GiB / 4.0 GiB stream (25%)  48.0 MiB/s stream  ETA 1m04s", p.String(), "a heartbeat without the wire rate")
	p.WireRate = 20 << 20
	require.Equal(t, "1.0 GiB / 4.0 GiB stream (25%)  20.0 MiB/s wire (48.0 MiB/s stream)  ETA 1m04s", p.String(), "compressed: both rates, labelled")
	p.Rate = 20 << 20
	require.Equal(t, "1.0 GiB / 4.0 GiB stream (25%)  20.0 MiB/s wire  ETA 2m34s", p.String())
	p.Attempt, p.Resumes, p.StartOffset = 2, 1, 1<<30
	require.Equal(t, "1.0 GiB / 4.0 GiB stream (25%)  20.0 MiB/s wire  ETA 2m34s  (attempt 2 resumed at 25%)", p.String())
	p.Resumes, p.StartOffset, p.Restarts, p.Restart = 0, 0, 1, RestartModeOff
	require.Equal(t, "1.0 GiB / 4.0 GiB stream (25%)  20.0 MiB/s wire  ETA 2m34s  (attempt 2 restarted from 0: off mode)", p.String())

	require.Equal(t, "512 B stream", ReceiveProgress{Bytes: 512}.String(), "no size, no rate: only what moved")
	require.Zero(t, ReceiveProgress{Bytes: 5, Expected: 4, Rate: 1}.ETA(), "past the expected size there is no ETA")
}

func TestHeartbeatCarriesItsLineFirst(t *testing.T) {
	hb := (&receiveTally{attempt: 1, interval: 2}).progress(3<<20, 4<<20, 2<<20, 1<<20, 1<<20, 3<<20, 0)
	require.Equal(t, "3.0 MiB / 4.0 MiB stream (75%)  1.0 MiB/s wire  ETA 1s", hb.Line)
	b, err := json.Marshal(hb)
	require.NoError(t, err)
	// The web UI shows the details as JSON in field order: the line first.
	require.Equal(t, `{"progress":"3.0 MiB / 4.0 MiB stream (75%)  1.0 MiB/s wire  ETA 1s","bytes":3145728,"expected":4194304,"durable_offset":2097152,"rate":1048576,`+
		`"wire_rate":1048576,"stream_sent":3145728,"wire_sent":3145728,"attempt":1,"interval":2}`, string(b))
}
