package ratelimit

import "time"

// Window is the length of the sliding window the limits count over.
const Window = 24 * time.Hour

// bucketWidth is the granularity of the sliding window. A charge is forgotten between 24 h and 24 h + one bucket
// after it was made: never early, so a limit is never exceeded, and memory per counter is bounded by the number
// of buckets in a window (1440) whatever the submission rate.
const bucketWidth = time.Minute

const bucketsPerWindow = int64(Window / bucketWidth)

// bucket counts the charges made in one minute, numbered from the Unix epoch.
type bucket struct {
	Minute int64 `json:"m"`
	Count  int   `json:"n"`
}

// window is one counter: its non-empty buckets, oldest first. Only minutes with charges are stored, so a counter
// charged rarely costs a few bytes.
type window struct {
	buckets []bucket
}

func minuteOf(t time.Time) int64 { return t.Unix() / int64(bucketWidth/time.Second) }

// expire drops the buckets that have left the window ending at minute now.
func (w *window) expire(now int64) {
	i := 0
	for i < len(w.buckets) && w.buckets[i].Minute < now-bucketsPerWindow {
		i++
	}
	if i > 0 {
		w.buckets = append(w.buckets[:0], w.buckets[i:]...)
	}
}

// count returns the charges in the window ending at minute now.
func (w *window) count(now int64) int {
	w.expire(now)
	c := 0
	for _, b := range w.buckets {
		c += b.Count
	}
	return c
}

// add charges n at minute now. A clock stepping backwards charges the newest bucket rather than reordering.
func (w *window) add(now int64, n int) {
	if k := len(w.buckets); k > 0 && w.buckets[k-1].Minute >= now {
		w.buckets[k-1].Count += n
		return
	}
	w.buckets = append(w.buckets, bucket{Minute: now, Count: n})
}
