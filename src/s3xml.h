/*
 * s3xml.h - the only door to libxml2: parse the S3 response documents objfs reads and
 * build the two it sends. Parsing never touches the network and never expands external
 * entities (XML_PARSE_NONET, no XML_PARSE_NOENT/DTDLOAD). Callable from any thread.
 *
 * Parsers return 0, EPROTO for a malformed or unexpected document, or ENOMEM. On error
 * the output is left empty (safe to free). A document with a DOCTYPE is refused (EPROTO)
 * before any entity is declared: S3 never sends one. Leading white space (S3 may send some
 * before a late error) is skipped. Elements are matched on local names, with or without a
 * namespace. Unknown elements are ignored.
 */
#ifndef OBJFS_S3XML_H
#define OBJFS_S3XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Initialise libxml2; call once from the main thread before any other thread may parse.
 * s3xml_global_cleanup releases libxml2's globals at exit, after every parser is done. */
void s3xml_global_init(void);
void s3xml_global_cleanup(void);

struct s3xml_object {
	char *key;             /* required, non-empty */
	uint64_t size;         /* required; above INT64_MAX (not an off_t) is EPROTO */
	struct timespec mtime; /* LastModified; zero when absent */
	char *etag;            /* with the quotes removed; NULL when absent */
};

struct s3xml_list {
	struct s3xml_object *objects;
	size_t n_objects;
	char **prefixes; /* CommonPrefixes/Prefix */
	size_t n_prefixes;
	bool truncated;
	char *next_token; /* NextContinuationToken, NULL when none */
	/* NextMarker (ListObjects v1); when absent and truncated, the greater of the last key and
	 * the last prefix; NULL when none. */
	char *next_marker;
};
/* ListBucketResult (ListObjects v1 and v2). */
int s3xml_parse_list(const char *doc, size_t len, struct s3xml_list *out);
/* The same for a listing requested with encoding-type=url when url_encoded: Key, Prefix and
 * NextMarker are percent-decoded ('+' is a space); a bad escape or %00 is EPROTO. */
int s3xml_parse_list_encoded(const char *doc, size_t len, bool url_encoded,
			     struct s3xml_list *out);
void s3xml_list_free(struct s3xml_list *l);

/* <Error><Code>..</Code><Message>..</Message><Region>..</Region></Error> */
struct s3xml_error {
	char *code;    /* required, non-empty */
	char *message; /* NULL when none (RGW often sends none) */
	char *region; /* Region hint (AuthorizationHeaderMalformed, PermanentRedirect); NULL when none */
};
int s3xml_parse_error(const char *doc, size_t len, struct s3xml_error *out);
void s3xml_error_free(struct s3xml_error *e);
/* True when doc's root element is <Error> (200-with-error bodies of Copy/Complete). */
bool s3xml_is_error(const char *doc, size_t len);

/* InitiateMultipartUploadResult/UploadId. *upload_id malloc'd. */
int s3xml_parse_initiate(const char *doc, size_t len, char **upload_id);
/* CopyObjectResult / CopyPartResult / CompleteMultipartUploadResult: the ETag, quotes
 * removed (malloc'd). An <Error> root returns EIO with *err filled (if err not NULL). */
int s3xml_parse_etag_result(const char *doc, size_t len, char **etag, struct s3xml_error *err);

/* DeleteResult: number of <Error> entries and the first failing key (malloc'd, NULL when no
 * error; first_error_key may be NULL). */
int s3xml_parse_delete_result(const char *doc, size_t len, size_t *n_errors, char **first_error_key);

struct s3xml_upload {
	char *key;
	char *upload_id;
	struct timespec initiated;
};
struct s3xml_uploads {
	struct s3xml_upload *uploads;
	size_t n_uploads;
	bool truncated;
	char *next_key_marker;       /* NULL when absent or empty */
	char *next_upload_id_marker; /* NULL when absent or empty */
};
int s3xml_parse_uploads(const char *doc, size_t len, struct s3xml_uploads *out);
void s3xml_uploads_free(struct s3xml_uploads *u);

/* Builders: return malloc'd NUL-terminated documents (&, <, >, ", ' escaped; TAB, LF, CR as
 * character references), or NULL with errno ENOMEM, or EINVAL for what S3 would refuse:
 * n == 0, more than 1000 keys, a part number outside 1..10000, a string that is not UTF-8 or
 * holds another control character (XML 1.0 cannot carry it). */
struct s3xml_part {
	int number;
	const char *etag; /* without quotes */
};
char *s3xml_build_complete(const struct s3xml_part *parts, size_t n);
char *s3xml_build_delete(const char *const *keys, size_t n, bool quiet);

/* Parse an ISO-8601 "2009-10-12T17:50:30.000Z" (fraction optional, up to ns; zone Z or
 * +hh:mm) or RFC 1123 "Wed, 12 Oct 2009 17:50:00 GMT" (or UTC). 0 or EPROTO. */
int s3xml_parse_time(const char *s, struct timespec *out);

#endif
