/* test_meta_cache.c - TTLs, negative entries, listings, the generation rule and the LRU bound of
 * meta_cache.c, on a fake clock. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "meta_cache.h"

static uint64_t fake_now = 1000;

static uint64_t fake_clock(void)
{
	return fake_now;
}

static struct meta_cache *make(long attr, long dir, long neg, size_t max)
{
	struct meta_cache_config cfg = {attr, dir, neg, max, fake_clock};
	struct meta_cache *mc = meta_cache_create(&cfg);

	assert_non_null(mc);
	return mc;
}

static struct meta_attr attr_of(uint64_t size)
{
	struct meta_attr a;

	memset(&a, 0, sizeof(a));
	a.mode = S_IFREG | 0640;
	a.size = size;
	return a;
}

static void test_attr_ttl(void **state)
{
	struct meta_cache *mc = make(1000, 1000, 100, 1000);
	struct meta_attr a = attr_of(42), out;

	assert_int_equal(meta_cache_get_attr(mc, "a/b", &out), META_MISS);
	assert_true(meta_cache_put_attr(mc, "a/b", meta_cache_begin(mc), &a));
	assert_int_equal(meta_cache_get_attr(mc, "a/b", &out), META_HIT);
	assert_int_equal(out.size, 42);
	assert_int_equal(meta_cache_get_attr(mc, "a/c", &out), META_MISS);
	fake_now += 999;
	assert_int_equal(meta_cache_get_attr(mc, "a/b", &out), META_HIT);
	fake_now += 1;
	assert_int_equal(meta_cache_get_attr(mc, "a/b", &out), META_MISS);
	meta_cache_destroy(mc);
}

static void test_negative_ttl(void **state)
{
	struct meta_cache *mc = make(1000, 1000, 100, 1000);
	struct meta_attr out;

	assert_true(meta_cache_put_negative(mc, "gone", meta_cache_begin(mc)));
	assert_int_equal(meta_cache_get_attr(mc, "gone", &out), META_NEGATIVE);
	fake_now += 100;
	assert_int_equal(meta_cache_get_attr(mc, "gone", &out), META_MISS);
	meta_cache_destroy(mc);
}

static void test_zero_ttl_caches_nothing(void **state)
{
	struct meta_cache *mc = make(0, 0, 0, 1000);
	struct meta_attr a = attr_of(1), out;
	struct meta_dirent d = {"x", S_IFREG};
	mode_t t;

	assert_false(meta_cache_put_attr(mc, "a", meta_cache_begin(mc), &a));
	assert_false(meta_cache_put_negative(mc, "b", meta_cache_begin(mc)));
	assert_false(meta_cache_put_dir(mc, "", meta_cache_begin(mc), &d, 1));
	assert_int_equal(meta_cache_get_attr(mc, "a", &out), META_MISS);
	assert_int_equal(meta_cache_get_attr(mc, "b", &out), META_MISS);
	assert_int_equal(meta_cache_dir_lookup(mc, "", "x", &t), META_MISS);
	meta_cache_destroy(mc);
}

/* A lookup that began before an invalidation must not store what it saw. */
static void test_generation_rejects_stale_put(void **state)
{
	struct meta_cache *mc = make(1000, 1000, 1000, 1000);
	struct meta_attr old = attr_of(1), fresh = attr_of(2), out;
	uint64_t snap = meta_cache_begin(mc);

	meta_cache_invalidate(mc, "k");
	assert_false(meta_cache_put_attr(mc, "k", snap, &old));
	assert_false(meta_cache_put_negative(mc, "k", snap));
	assert_int_equal(meta_cache_get_attr(mc, "k", &out), META_MISS);
	/* a lookup begun after the change is fine */
	assert_true(meta_cache_put_attr(mc, "k", meta_cache_begin(mc), &fresh));
	/* other keys are not affected by k's change (different stripe) */
	snap = meta_cache_begin(mc);
	meta_cache_invalidate(mc, "k");
	assert_true(meta_cache_put_attr(mc, "other-key", snap, &old));

	/* set_attr (a local write) wins over a lookup that started before it */
	snap = meta_cache_begin(mc);
	meta_cache_set_attr(mc, "w", &fresh);
	assert_false(meta_cache_put_attr(mc, "w", snap, &old));
	assert_int_equal(meta_cache_get_attr(mc, "w", &out), META_HIT);
	assert_int_equal(out.size, 2);

	struct meta_cache_stats st;
	meta_cache_get_stats(mc, &st);
	assert_true(st.stale_puts >= 3);
	meta_cache_destroy(mc);
}

static void test_listing(void **state)
{
	struct meta_cache *mc = make(1000, 500, 1000, 1000);
	struct meta_dirent in[] = {{"b", S_IFREG}, {"a", S_IFDIR}, {"c", S_IFLNK}, {"a", S_IFDIR}};
	struct meta_dirent *ents;
	size_t n;
	mode_t t = 0;

	assert_int_equal(meta_cache_dir_lookup(mc, "d", "a", &t), META_MISS);
	assert_false(meta_cache_get_dir(mc, "d", &ents, &n));
	assert_true(meta_cache_put_dir(mc, "d", meta_cache_begin(mc), in, 4));
	assert_true(meta_cache_get_dir(mc, "d", &ents, &n));
	assert_int_equal(n, 3); /* sorted, duplicate dropped */
	assert_string_equal(ents[0].name, "a");
	assert_string_equal(ents[1].name, "b");
	assert_string_equal(ents[2].name, "c");
	meta_cache_dirents_free(ents, n);
	assert_int_equal(meta_cache_dir_lookup(mc, "d", "c", &t), META_HIT);
	assert_int_equal(t, S_IFLNK);
	assert_int_equal(meta_cache_dir_lookup(mc, "d", "zz", &t), META_NEGATIVE);

	/* local changes keep the listing current and refuse older listings */
	uint64_t snap = meta_cache_begin(mc);
	meta_cache_dir_add(mc, "d", "ab", S_IFREG | 0644);
	meta_cache_dir_remove(mc, "d", "b");
	assert_false(meta_cache_put_dir(mc, "d", snap, in, 4));
	assert_true(meta_cache_get_dir(mc, "d", &ents, &n));
	assert_int_equal(n, 3);
	assert_string_equal(ents[0].name, "a");
	assert_string_equal(ents[1].name, "ab");
	assert_int_equal(ents[1].type, S_IFREG);
	assert_string_equal(ents[2].name, "c");
	meta_cache_dirents_free(ents, n);

	fake_now += 500;
	assert_int_equal(meta_cache_dir_lookup(mc, "d", "a", &t), META_MISS);
	/* dir_add on an uncached listing does not create one */
	meta_cache_dir_add(mc, "d", "new", S_IFREG);
	assert_false(meta_cache_get_dir(mc, "d", &ents, &n));

	assert_true(meta_cache_put_dir(mc, "d", meta_cache_begin(mc), in, 1));
	meta_cache_invalidate_dir(mc, "d");
	assert_int_equal(meta_cache_dir_lookup(mc, "d", "b", &t), META_MISS);
	meta_cache_destroy(mc);
}

static void test_invalidate_tree(void **state)
{
	struct meta_cache *mc = make(1000, 1000, 1000, 1000);
	struct meta_attr a = attr_of(1), out;
	struct meta_dirent d = {"x", S_IFREG};
	uint64_t snap = meta_cache_begin(mc);

	assert_true(meta_cache_put_attr(mc, "a", snap, &a));
	assert_true(meta_cache_put_attr(mc, "a/x", snap, &a));
	assert_true(meta_cache_put_attr(mc, "ab", snap, &a));
	assert_true(meta_cache_put_dir(mc, "a", snap, &d, 1));
	meta_cache_invalidate_tree(mc, "a");
	assert_int_equal(meta_cache_get_attr(mc, "a", &out), META_MISS);
	assert_int_equal(meta_cache_get_attr(mc, "a/x", &out), META_MISS);
	assert_int_equal(meta_cache_get_attr(mc, "ab", &out), META_HIT); /* sibling, not child */
	assert_false(meta_cache_get_dir(mc, "a", &(struct meta_dirent *){NULL}, &(size_t){0}));
	assert_false(meta_cache_put_attr(mc, "zzz", snap, &a)); /* everything older is stale */
	meta_cache_destroy(mc);
}

static void test_lru_bound(void **state)
{
	struct meta_cache *mc = make(100000, 100000, 100000, 100);
	struct meta_attr a = attr_of(7), out;
	struct meta_cache_stats st;
	char key[32];

	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "f%d", i);
		assert_true(meta_cache_put_attr(mc, key, meta_cache_begin(mc), &a));
		/* keep f0 hot */
		assert_int_equal(meta_cache_get_attr(mc, "f0", &out), META_HIT);
	}
	meta_cache_get_stats(mc, &st);
	assert_true(st.entries <= 100);
	assert_true(st.weight <= 100);
	assert_int_equal(st.evictions, 900);
	assert_int_equal(meta_cache_get_attr(mc, "f0", &out), META_HIT);
	assert_int_equal(meta_cache_get_attr(mc, "f999", &out), META_HIT);
	assert_int_equal(meta_cache_get_attr(mc, "f500", &out), META_MISS);

	/* a big listing weighs more than one entry and pushes attributes out */
	struct meta_dirent *big = calloc(800, sizeof(*big));
	for (int i = 0; i < 800; i++) {
		snprintf(key, sizeof(key), "n%04d", i);
		big[i].name = strdup(key);
		big[i].type = S_IFREG;
	}
	assert_true(meta_cache_put_dir(mc, "big", meta_cache_begin(mc), big, 800));
	meta_cache_get_stats(mc, &st);
	assert_true(st.weight <= 100);
	assert_true(st.entries <= 100 - 800 / 16 + 1);
	mode_t t;
	assert_int_equal(meta_cache_dir_lookup(mc, "big", "n0799", &t), META_HIT);
	meta_cache_dirents_free(big, 800);
	meta_cache_destroy(mc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_attr_ttl),
		cmocka_unit_test(test_negative_ttl),
		cmocka_unit_test(test_zero_ttl_caches_nothing),
		cmocka_unit_test(test_generation_rejects_stale_put),
		cmocka_unit_test(test_listing),
		cmocka_unit_test(test_invalidate_tree),
		cmocka_unit_test(test_lru_bound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
