package main

import (
	"math/bits"
	"sync/atomic"
)

// histogram counts durations in microseconds in log-linear buckets (128 sub-buckets per
// power of two, under 0.8% error), lock-free, so every receiving goroutine records into
// the same one.
type histogram struct {
	buckets [subBuckets + 40*halfBuckets]atomic.Int64
	count   atomic.Int64
	sum     atomic.Int64
	max     atomic.Int64
}

const (
	subBuckets  = 256
	halfBuckets = subBuckets / 2
)

func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	if v < subBuckets {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - 8
	mantissa := v >> shift // in [128, 255]
	index := subBuckets + (shift-1)*halfBuckets + int(mantissa-halfBuckets)
	if index >= subBuckets+40*halfBuckets {
		index = subBuckets + 40*halfBuckets - 1
	}
	return index
}

// lowerBound is the smallest value that falls in bucket `index`.
func lowerBound(index int) int64 {
	if index < subBuckets {
		return int64(index)
	}
	index -= subBuckets
	shift := index/halfBuckets + 1
	mantissa := int64(index%halfBuckets + halfBuckets)
	return mantissa << shift
}

func (h *histogram) record(micros int64) {
	h.buckets[bucketOf(micros)].Add(1)
	h.count.Add(1)
	h.sum.Add(micros)
	for {
		old := h.max.Load()
		if micros <= old || h.max.CompareAndSwap(old, micros) {
			return
		}
	}
}

// quantile is the value below which fraction q of the samples fall (bucket midpoint).
func (h *histogram) quantile(q float64) float64 {
	total := h.count.Load()
	if total == 0 {
		return 0
	}
	rank := int64(q*float64(total) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen int64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen >= rank {
			low := lowerBound(i)
			high := lowerBound(i + 1)
			if m := h.max.Load(); high > m {
				high = m
			}
			if high < low {
				high = low
			}
			return float64(low+high) / 2
		}
	}
	return float64(h.max.Load())
}

// summary is the histogram in milliseconds, as reported.
func (h *histogram) summary() map[string]any {
	count := h.count.Load()
	out := map[string]any{"count": count}
	if count == 0 {
		return out
	}
	ms := func(micros float64) float64 { return float64(int64(micros)) / 1000 }
	out["p50"] = ms(h.quantile(0.50))
	out["p90"] = ms(h.quantile(0.90))
	out["p99"] = ms(h.quantile(0.99))
	out["p999"] = ms(h.quantile(0.999))
	out["max"] = ms(float64(h.max.Load()))
	out["mean"] = ms(float64(h.sum.Load()) / float64(count))
	return out
}
