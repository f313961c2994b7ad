package enrich

import (
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/mileusna/useragent"
)

// uaCache remembers parsed User-Agent strings. Real traffic repeats a few
// thousand of them, and parsing one costs more than the rest of an event's
// enrichment; a hit is a map lookup.
type uaCache struct {
	c *lru.Cache[string, useragent.UserAgent]
}

// maxCachedUA keeps hostile, unique multi-kilobyte headers out of the cache:
// they are parsed every time, as before.
const maxCachedUA = 512

func newUACache(size int) *uaCache {
	c, err := lru.New[string, useragent.UserAgent](size)
	if err != nil {
		panic(err) // only for size <= 0, which New never passes
	}
	return &uaCache{c: c}
}

func (u *uaCache) parse(ua string) useragent.UserAgent {
	if len(ua) > maxCachedUA {
		return useragent.Parse(ua)
	}
	if v, ok := u.c.Get(ua); ok {
		return v
	}
	v := useragent.Parse(ua)
	u.c.Add(ua, v)
	return v
}
