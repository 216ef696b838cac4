/*
 * s3xml.h - the only door to libxml2: parse the S3 response documents objfs reads and
 * build the two it sends. Parsing never touches the network and never expands external
 * entities (XML_PARSE_NONET, no XML_PARSE_NOENT/DTDLOAD). Callable from any thread.
 *
 * Parsers return 0, EPROTO for a malformed or unexpected document, or ENOMEM. On error
 * the output is left empty (safe to free).
 */
#ifndef OBJFS_S3XML_H
#define OBJFS_S3XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct s3xml_object {
	char *key;
	uint64_t size;
	struct timespec mtime; /* LastModified */
	char *etag;            /* with the quotes removed */
};

struct s3xml_list {
	struct s3xml_object *objects;
	size_t n_objects;
	char **prefixes; /* CommonPrefixes/Prefix */
	size_t n_prefixes;
	bool truncated;
	char *next_token; /* NextContinuationToken, NULL when none */
	char *next_marker; /* NextMarker (ListObjects v1) or last key; NULL when none */
};
int s3xml_parse_list(const char *doc, size_t len, struct s3xml_list *out);
void s3xml_list_free(struct s3xml_list *l);

/* <Error><Code>..</Code><Message>..</Message><Region>..</Region></Error> */
struct s3xml_error {
	char *code;
	char *message;
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

/* DeleteResult: number of <Error> entries and the first failing key. */
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
	char *next_key_marker;
	char *next_upload_id_marker;
};
int s3xml_parse_uploads(const char *doc, size_t len, struct s3xml_uploads *out);
void s3xml_uploads_free(struct s3xml_uploads *u);

/* Builders: return malloc'd NUL-terminated documents (XML-escaped), or NULL on ENOMEM. */
struct s3xml_part {
	int number;
	const char *etag; /* without quotes */
};
char *s3xml_build_complete(const struct s3xml_part *parts, size_t n);
char *s3xml_build_delete(const char *const *keys, size_t n, bool quiet);

/* Parse an ISO-8601 "2009-10-12T17:50:30.000Z" or RFC 1123 "Wed, 12 Oct 2009 17:50:00 GMT". */
int s3xml_parse_time(const char *s, struct timespec *out);

#endif
