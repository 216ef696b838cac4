/*
 * s3xml.c - the S3 response documents objfs reads (listings, errors, multipart and delete
 * results) and the two it sends (CompleteMultipartUpload, Delete). The only file that
 * includes <libxml/...>. No state of its own: each call parses with its own parser context,
 * so any thread may call it once s3xml_global_init has run.
 *
 * Safety: parsing uses XML_PARSE_NONET and never XML_PARSE_NOENT/DTDLOAD, and a DOCTYPE stops
 * the parser at once (s3xml_refuse_dtd), so no entity is declared, expanded or fetched. Text
 * is taken only from text and CDATA children, never through entity references.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlstring.h>

#include "s3xml.h"
#include "strbuf.h"

#define S3XML_NS "http://s3.amazonaws.com/doc/2006-03-01/"
#define S3XML_MAX_DELETE_KEYS 1000
#define S3XML_MAX_PART_NUMBER 10000


void s3xml_global_init(void)
{
	xmlInitParser();
}

void s3xml_global_cleanup(void)
{
	xmlCleanupParser();
}

/* ---- reading ------------------------------------------------------------------------- */

/* SAX internalSubset hook: a DOCTYPE was seen; stop before any declaration is read. */
static void s3xml_refuse_dtd(void *ctx, const xmlChar *name, const xmlChar *external_id,
			     const xmlChar *system_id)
{
	xmlParserCtxtPtr ctxt = ctx;

	ctxt->wellFormed = 0;
	xmlStopParser(ctxt);
}

static bool s3xml_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Parse doc into *out, requiring (when root_name is not NULL) that the root's local name be
 * root_name. 0, EPROTO or ENOMEM.
 */
static int s3xml_read(const char *doc, size_t len, const char *root_name, xmlDocPtr *out)
{
	xmlParserCtxtPtr ctxt;
	xmlDocPtr d;
	xmlNodePtr root;

	*out = NULL;
	if (!doc)
		return EPROTO;
	while (len > 0 && s3xml_is_space(*doc)) {
		doc++;
		len--;
	}
	if (len == 0 || len > INT_MAX)
		return EPROTO;
	ctxt = xmlNewParserCtxt();
	if (!ctxt)
		return ENOMEM;
	ctxt->sax->internalSubset = s3xml_refuse_dtd;
	d = xmlCtxtReadMemory(ctxt, doc, (int)len, NULL, NULL,
			      XML_PARSE_NONET | XML_PARSE_NOBLANKS | XML_PARSE_NOERROR |
				      XML_PARSE_NOWARNING);
	xmlFreeParserCtxt(ctxt);
	if (!d)
		return EPROTO;
	root = xmlDocGetRootElement(d);
	if (!root || d->intSubset || d->extSubset ||
	    (root_name && strcmp((const char *)root->name, root_name) != 0)) {
		xmlFreeDoc(d);
		return EPROTO;
	}
	*out = d;
	return 0;
}

/* First element child of parent with the local name name, or NULL. */
static xmlNodePtr s3xml_child(xmlNodePtr parent, const char *name)
{
	for (xmlNodePtr c = parent ? parent->children : NULL; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE && strcmp((const char *)c->name, name) == 0)
			return c;
	return NULL;
}

static bool s3xml_is(xmlNodePtr n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

/* The text of n (its text and CDATA children), malloc'd; 0 or ENOMEM. */
static int s3xml_text(xmlNodePtr n, char **out)
{
	size_t len = 0;
	char *s;

	for (xmlNodePtr c = n->children; c; c = c->next)
		if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content)
			len += strlen((const char *)c->content);
	s = malloc(len + 1);
	if (!s)
		return ENOMEM;
	len = 0;
	for (xmlNodePtr c = n->children; c; c = c->next) {
		if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content) {
			size_t l = strlen((const char *)c->content);

			memcpy(s + len, c->content, l);
			len += l;
		}
	}
	s[len] = '\0';
	*out = s;
	return 0;
}

/* Text of the child name of parent: *out NULL when the child is absent (or empty and
 * !keep_empty). 0 or ENOMEM. */
static int s3xml_child_text(xmlNodePtr parent, const char *name, bool keep_empty, char **out)
{
	xmlNodePtr c = s3xml_child(parent, name);
	int err;

	*out = NULL;
	if (!c)
		return 0;
	err = s3xml_text(c, out);
	if (!err && !keep_empty && **out == '\0') {
		free(*out);
		*out = NULL;
	}
	return err;
}

/* Text of a required, non-empty child; EPROTO when it is missing or empty. */
static int s3xml_child_required(xmlNodePtr parent, const char *name, char **out)
{
	int err = s3xml_child_text(parent, name, false, out);

	return err ? err : (*out ? 0 : EPROTO);
}

/* s with surrounding white space removed, in place. */
static char *s3xml_trim(char *s)
{
	char *end;

	while (s3xml_is_space(*s))
		s++;
	end = s + strlen(s);
	while (end > s && s3xml_is_space(end[-1]))
		end--;
	*end = '\0';
	return s;
}

/* Strict decimal: digits only (white space around allowed), at most INT64_MAX. */
static int s3xml_parse_size(char *text, uint64_t *out)
{
	char *s = s3xml_trim(text);
	uint64_t v = 0;

	if (!*s)
		return EPROTO;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return EPROTO;
		if (v > ((uint64_t)INT64_MAX - (uint64_t)(*s - '0')) / 10)
			return EPROTO;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

static int s3xml_parse_bool(char *text, bool *out)
{
	char *s = s3xml_trim(text);

	if (strcasecmp(s, "true") == 0)
		*out = true;
	else if (strcasecmp(s, "false") == 0)
		*out = false;
	else
		return EPROTO;
	return 0;
}

/* Optional boolean child; false when absent. */
static int s3xml_child_bool(xmlNodePtr parent, const char *name, bool *out)
{
	char *text;
	int err = s3xml_child_text(parent, name, true, &text);

	*out = false;
	if (!err && text)
		err = s3xml_parse_bool(text, out);
	free(text);
	return err;
}

/* Optional time child; zero when absent, EPROTO when unparsable. */
static int s3xml_child_time(xmlNodePtr parent, const char *name, struct timespec *out)
{
	char *text;
	int err = s3xml_child_text(parent, name, true, &text);

	out->tv_sec = 0;
	out->tv_nsec = 0;
	if (!err && text)
		err = s3xml_parse_time(text, out);
	free(text);
	return err;
}

static int s3xml_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decode an encoding-type=url value in place ('+' is a space). EPROTO for a bad escape or
 * a NUL byte. */
static int s3xml_url_decode(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (*s == '+') {
			*o++ = ' ';
		} else if (*s == '%') {
			int hi = s3xml_hexval(s[1]), lo = hi < 0 ? -1 : s3xml_hexval(s[2]);

			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return EPROTO;
			*o++ = (char)(hi << 4 | lo);
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
	return 0;
}

/* Remove surrounding white space and one pair of double quotes from an ETag, in place. */
static void s3xml_unquote(char *etag)
{
	char *s = s3xml_trim(etag);
	size_t len = strlen(s);

	if (len >= 2 && s[0] == '"' && s[len - 1] == '"') {
		s++;
		len -= 2;
	}
	memmove(etag, s, len);
	etag[len] = '\0';
}

/* ---- listings ------------------------------------------------------------------------ */

static int s3xml_parse_object(xmlNodePtr n, bool url_encoded, struct s3xml_object *o)
{
	char *size = NULL;
	int err;

	err = s3xml_child_required(n, "Key", &o->key);
	if (!err && url_encoded)
		err = s3xml_url_decode(o->key);
	if (!err && !*o->key)
		err = EPROTO;
	if (!err)
		err = s3xml_child_required(n, "Size", &size);
	if (!err)
		err = s3xml_parse_size(size, &o->size);
	if (!err)
		err = s3xml_child_time(n, "LastModified", &o->mtime);
	if (!err)
		err = s3xml_child_text(n, "ETag", false, &o->etag);
	if (!err && o->etag)
		s3xml_unquote(o->etag);
	free(size);
	return err;
}

void s3xml_list_free(struct s3xml_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n_objects; i++) {
		free(l->objects[i].key);
		free(l->objects[i].etag);
	}
	free(l->objects);
	for (size_t i = 0; i < l->n_prefixes; i++)
		free(l->prefixes[i]);
	free(l->prefixes);
	free(l->next_token);
	free(l->next_marker);
	memset(l, 0, sizeof(*l));
}

int s3xml_parse_list_encoded(const char *doc, size_t len, bool url_encoded,
			     struct s3xml_list *out)
{
	xmlDocPtr d = NULL;
	xmlNodePtr root;
	size_t n_contents = 0, n_prefixes = 0;
	int err;

	memset(out, 0, sizeof(*out));
	err = s3xml_read(doc, len, "ListBucketResult", &d);
	if (err)
		return err;
	root = xmlDocGetRootElement(d);
	for (xmlNodePtr c = root->children; c; c = c->next) {
		n_contents += s3xml_is(c, "Contents");
		n_prefixes += s3xml_is(c, "CommonPrefixes");
	}
	out->objects = calloc(n_contents ? n_contents : 1, sizeof(*out->objects));
	out->prefixes = calloc(n_prefixes ? n_prefixes : 1, sizeof(*out->prefixes));
	if (!out->objects || !out->prefixes) {
		err = ENOMEM;
		goto out;
	}
	for (xmlNodePtr c = root->children; c && !err; c = c->next) {
		if (s3xml_is(c, "Contents")) {
			err = s3xml_parse_object(c, url_encoded, &out->objects[out->n_objects++]);
		} else if (s3xml_is(c, "CommonPrefixes")) {
			char **p = &out->prefixes[out->n_prefixes++];

			err = s3xml_child_required(c, "Prefix", p);
			if (!err && url_encoded)
				err = s3xml_url_decode(*p);
		}
	}
	if (!err)
		err = s3xml_child_bool(root, "IsTruncated", &out->truncated);
	if (!err)
		err = s3xml_child_text(root, "NextContinuationToken", false, &out->next_token);
	if (!err)
		err = s3xml_child_text(root, "NextMarker", false, &out->next_marker);
	if (!err && out->next_marker && url_encoded)
		err = s3xml_url_decode(out->next_marker);
	if (!err && out->truncated && !out->next_marker && (out->n_objects || out->n_prefixes)) {
		const char *key = out->n_objects ? out->objects[out->n_objects - 1].key : NULL;
		const char *prefix = out->n_prefixes ? out->prefixes[out->n_prefixes - 1] : NULL;
		const char *last = !key ? prefix : !prefix ? key : strcmp(key, prefix) > 0 ? key
											 : prefix;

		out->next_marker = strdup(last);
		if (!out->next_marker)
			err = ENOMEM;
	}
out:
	if (err)
		s3xml_list_free(out);
	xmlFreeDoc(d);
	return err;
}

int s3xml_parse_list(const char *doc, size_t len, struct s3xml_list *out)
{
	return s3xml_parse_list_encoded(doc, len, false, out);
}

/* ---- errors and results -------------------------------------------------------------- */

void s3xml_error_free(struct s3xml_error *e)
{
	if (!e)
		return;
	free(e->code);
	free(e->message);
	free(e->region);
	memset(e, 0, sizeof(*e));
}

/* Fill e from an <Error> element; EPROTO (with e emptied) when Code is missing. */
static int s3xml_error_fill(xmlNodePtr root, struct s3xml_error *e)
{
	int err = s3xml_child_required(root, "Code", &e->code);

	if (!err)
		err = s3xml_child_text(root, "Message", false, &e->message);
	if (!err)
		err = s3xml_child_text(root, "Region", false, &e->region);
	if (err)
		s3xml_error_free(e);
	return err;
}

int s3xml_parse_error(const char *doc, size_t len, struct s3xml_error *out)
{
	xmlDocPtr d;
	int err;

	memset(out, 0, sizeof(*out));
	err = s3xml_read(doc, len, "Error", &d);
	if (err)
		return err;
	err = s3xml_error_fill(xmlDocGetRootElement(d), out);
	xmlFreeDoc(d);
	return err;
}

bool s3xml_is_error(const char *doc, size_t len)
{
	xmlDocPtr d;

	if (s3xml_read(doc, len, "Error", &d))
		return false;
	xmlFreeDoc(d);
	return true;
}

int s3xml_parse_initiate(const char *doc, size_t len, char **upload_id)
{
	xmlDocPtr d;
	int err;

	*upload_id = NULL;
	err = s3xml_read(doc, len, "InitiateMultipartUploadResult", &d);
	if (err)
		return err;
	err = s3xml_child_required(xmlDocGetRootElement(d), "UploadId", upload_id);
	xmlFreeDoc(d);
	return err;
}

int s3xml_parse_etag_result(const char *doc, size_t len, char **etag, struct s3xml_error *err_out)
{
	xmlDocPtr d;
	xmlNodePtr root;
	const char *name;
	int err;

	*etag = NULL;
	if (err_out)
		memset(err_out, 0, sizeof(*err_out));
	err = s3xml_read(doc, len, NULL, &d);
	if (err)
		return err;
	root = xmlDocGetRootElement(d);
	name = (const char *)root->name;
	if (strcmp(name, "Error") == 0) {
		/* A 200 that failed: EIO even when the error itself is malformed. */
		err = err_out ? s3xml_error_fill(root, err_out) : 0;
		err = err == ENOMEM ? ENOMEM : EIO;
	} else if (strcmp(name, "CopyObjectResult") == 0 || strcmp(name, "CopyPartResult") == 0 ||
		   strcmp(name, "CompleteMultipartUploadResult") == 0) {
		err = s3xml_child_required(root, "ETag", etag);
		if (!err) {
			s3xml_unquote(*etag);
			if (!**etag)
				err = EPROTO;
		}
		if (err) {
			free(*etag);
			*etag = NULL;
		}
	} else {
		err = EPROTO;
	}
	xmlFreeDoc(d);
	return err;
}

int s3xml_parse_delete_result(const char *doc, size_t len, size_t *n_errors, char **first_error_key)
{
	xmlDocPtr d;
	char *first = NULL;
	size_t n = 0;
	int err;

	*n_errors = 0;
	if (first_error_key)
		*first_error_key = NULL;
	err = s3xml_read(doc, len, "DeleteResult", &d);
	if (err)
		return err;
	for (xmlNodePtr c = xmlDocGetRootElement(d)->children; c && !err; c = c->next) {
		if (!s3xml_is(c, "Error"))
			continue;
		if (n++ == 0)
			err = s3xml_child_required(c, "Key", &first);
	}
	if (err) {
		free(first);
	} else {
		*n_errors = n;
		if (first_error_key)
			*first_error_key = first;
		else
			free(first);
	}
	xmlFreeDoc(d);
	return err;
}

void s3xml_uploads_free(struct s3xml_uploads *u)
{
	if (!u)
		return;
	for (size_t i = 0; i < u->n_uploads; i++) {
		free(u->uploads[i].key);
		free(u->uploads[i].upload_id);
	}
	free(u->uploads);
	free(u->next_key_marker);
	free(u->next_upload_id_marker);
	memset(u, 0, sizeof(*u));
}

int s3xml_parse_uploads(const char *doc, size_t len, struct s3xml_uploads *out)
{
	xmlDocPtr d;
	xmlNodePtr root;
	size_t n = 0;
	int err;

	memset(out, 0, sizeof(*out));
	err = s3xml_read(doc, len, "ListMultipartUploadsResult", &d);
	if (err)
		return err;
	root = xmlDocGetRootElement(d);
	for (xmlNodePtr c = root->children; c; c = c->next)
		n += s3xml_is(c, "Upload");
	out->uploads = calloc(n ? n : 1, sizeof(*out->uploads));
	if (!out->uploads) {
		err = ENOMEM;
		goto out;
	}
	for (xmlNodePtr c = root->children; c && !err; c = c->next) {
		struct s3xml_upload *u;

		if (!s3xml_is(c, "Upload"))
			continue;
		u = &out->uploads[out->n_uploads++];
		err = s3xml_child_required(c, "Key", &u->key);
		if (!err)
			err = s3xml_child_required(c, "UploadId", &u->upload_id);
		if (!err)
			err = s3xml_child_time(c, "Initiated", &u->initiated);
	}
	if (!err)
		err = s3xml_child_bool(root, "IsTruncated", &out->truncated);
	if (!err)
		err = s3xml_child_text(root, "NextKeyMarker", false, &out->next_key_marker);
	if (!err)
		err = s3xml_child_text(root, "NextUploadIdMarker", false,
				       &out->next_upload_id_marker);
out:
	if (err)
		s3xml_uploads_free(out);
	xmlFreeDoc(d);
	return err;
}

/* ---- time ---------------------------------------------------------------------------- */

/* Exactly n decimal digits at *p into *out; advances *p. */
static bool s3xml_digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		char c = (*p)[i];

		if (c < '0' || c > '9')
			return false;
		v = v * 10 + (c - '0');
	}
	*p += n;
	*out = v;
	return true;
}

static bool s3xml_expect(const char **p, char c)
{
	if (**p != c)
		return false;
	(*p)++;
	return true;
}

static int s3xml_month(const char *s)
{
	static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";

	for (int i = 0; i < 12; i++)
		if (strncmp(s, names + 3 * i, 3) == 0)
			return i + 1;
	return 0;
}

static bool s3xml_weekday(const char *s)
{
	static const char names[] = "MonTueWedThuFriSatSun";

	for (int i = 0; i < 7; i++)
		if (strncmp(s, names + 3 * i, 3) == 0)
			return true;
	return false;
}

/* Calendar fields to seconds since the epoch, checking every range. */
static bool s3xml_make_time(int year, int mon, int day, int hour, int min, int sec, time_t *out)
{
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	struct tm tm = {0};

	if (year < 1970 || mon < 1 || mon > 12 || day < 1 ||
	    day > mdays[mon - 1] + (mon == 2 && leap) || hour > 23 || min > 59 || sec > 60)
		return false;
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	*out = timegm(&tm);
	return *out != (time_t)-1;
}

static int s3xml_parse_iso8601(const char *p, struct timespec *out)
{
	int year, mon, day, hour, min, sec, zh = 0, zm = 0, sign = 0;
	long nsec = 0;
	time_t t;

	if (!s3xml_digits(&p, 4, &year) || !s3xml_expect(&p, '-') || !s3xml_digits(&p, 2, &mon) ||
	    !s3xml_expect(&p, '-') || !s3xml_digits(&p, 2, &day) || !s3xml_expect(&p, 'T') ||
	    !s3xml_digits(&p, 2, &hour) || !s3xml_expect(&p, ':') || !s3xml_digits(&p, 2, &min) ||
	    !s3xml_expect(&p, ':') || !s3xml_digits(&p, 2, &sec))
		return EPROTO;
	if (*p == '.') {
		int n = 0;

		p++;
		if (*p < '0' || *p > '9')
			return EPROTO;
		for (; *p >= '0' && *p <= '9'; p++, n++)
			if (n < 9)
				nsec = nsec * 10 + (*p - '0');
		for (; n < 9; n++)
			nsec *= 10;
	}
	if (*p == 'Z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '+' ? 1 : -1;
		if (!s3xml_digits(&p, 2, &zh))
			return EPROTO;
		if (*p == ':')
			p++;
		if (!s3xml_digits(&p, 2, &zm) || zh > 23 || zm > 59)
			return EPROTO;
	} else {
		return EPROTO; /* no zone: ambiguous */
	}
	if (*p || !s3xml_make_time(year, mon, day, hour, min, sec, &t))
		return EPROTO;
	out->tv_sec = t - sign * (zh * 3600 + zm * 60);
	out->tv_nsec = nsec;
	return 0;
}

static int s3xml_parse_rfc1123(const char *p, struct timespec *out)
{
	int year, mon, day, hour, min, sec;
	time_t t;

	if (strlen(p) < 5 || !s3xml_weekday(p))
		return EPROTO;
	p += 3;
	if (!s3xml_expect(&p, ',') || !s3xml_expect(&p, ' '))
		return EPROTO;
	if (!s3xml_digits(&p, 2, &day) && !s3xml_digits(&p, 1, &day))
		return EPROTO;
	if (!s3xml_expect(&p, ' ') || strlen(p) < 3 || !(mon = s3xml_month(p)))
		return EPROTO;
	p += 3;
	if (!s3xml_expect(&p, ' ') || !s3xml_digits(&p, 4, &year) || !s3xml_expect(&p, ' ') ||
	    !s3xml_digits(&p, 2, &hour) || !s3xml_expect(&p, ':') || !s3xml_digits(&p, 2, &min) ||
	    !s3xml_expect(&p, ':') || !s3xml_digits(&p, 2, &sec) || !s3xml_expect(&p, ' '))
		return EPROTO;
	if ((strcmp(p, "GMT") != 0 && strcmp(p, "UTC") != 0) ||
	    !s3xml_make_time(year, mon, day, hour, min, sec, &t))
		return EPROTO;
	out->tv_sec = t;
	out->tv_nsec = 0;
	return 0;
}

int s3xml_parse_time(const char *s, struct timespec *out)
{
	char buf[64];
	size_t len;
	int err;

	while (s3xml_is_space(*s))
		s++;
	len = strlen(s);
	while (len > 0 && s3xml_is_space(s[len - 1]))
		len--;
	if (len == 0 || len >= sizeof(buf))
		return EPROTO;
	memcpy(buf, s, len);
	buf[len] = '\0';
	err = buf[0] >= '0' && buf[0] <= '9' ? s3xml_parse_iso8601(buf, out)
					     : s3xml_parse_rfc1123(buf, out);
	return err;
}

/* ---- builders ------------------------------------------------------------------------ */

/* Append s escaped for element content; false when XML 1.0 cannot carry it. */
static bool s3xml_put_escaped(struct strbuf *b, const char *s)
{
	if (!xmlCheckUTF8((const unsigned char *)s))
		return false;
	for (; *s; s++) {
		switch (*s) {
		case '&': strbuf_puts(b, "&amp;"); break;
		case '<': strbuf_puts(b, "&lt;"); break;
		case '>': strbuf_puts(b, "&gt;"); break;
		case '"': strbuf_puts(b, "&quot;"); break;
		case '\'': strbuf_puts(b, "&apos;"); break;
		case '\t': strbuf_puts(b, "&#9;"); break;
		case '\n': strbuf_puts(b, "&#10;"); break;
		case '\r': strbuf_puts(b, "&#13;"); break;
		default:
			if ((unsigned char)*s < 0x20)
				return false;
			strbuf_put(b, s, 1);
		}
	}
	return true;
}

/* The finished document, or NULL with errno (EINVAL when !ok, else ENOMEM). */
static char *s3xml_finish(struct strbuf *b, bool ok)
{
	if (!ok) {
		strbuf_free(b);
		errno = EINVAL;
		return NULL;
	}
	return strbuf_finish(b);
}

char *s3xml_build_complete(const struct s3xml_part *parts, size_t n)
{
	struct strbuf b = {0};
	bool ok = n > 0;

	strbuf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		       "<CompleteMultipartUpload xmlns=\"" S3XML_NS "\">");
	for (size_t i = 0; i < n && ok; i++) {
		char num[32];

		ok = parts[i].number >= 1 && parts[i].number <= S3XML_MAX_PART_NUMBER &&
		     parts[i].etag;
		if (!ok)
			break;
		snprintf(num, sizeof(num), "%d", parts[i].number);
		strbuf_puts(&b, "<Part><PartNumber>");
		strbuf_puts(&b, num);
		strbuf_puts(&b, "</PartNumber><ETag>&quot;");
		ok = s3xml_put_escaped(&b, parts[i].etag);
		strbuf_puts(&b, "&quot;</ETag></Part>");
	}
	strbuf_puts(&b, "</CompleteMultipartUpload>\n");
	return s3xml_finish(&b, ok);
}

char *s3xml_build_delete(const char *const *keys, size_t n, bool quiet)
{
	struct strbuf b = {0};
	bool ok = n > 0 && n <= S3XML_MAX_DELETE_KEYS;

	strbuf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		       "<Delete xmlns=\"" S3XML_NS "\">");
	if (quiet)
		strbuf_puts(&b, "<Quiet>true</Quiet>");
	for (size_t i = 0; i < n && ok; i++) {
		ok = keys[i] && keys[i][0];
		if (!ok)
			break;
		strbuf_puts(&b, "<Object><Key>");
		ok = s3xml_put_escaped(&b, keys[i]);
		strbuf_puts(&b, "</Key></Object>");
	}
	strbuf_puts(&b, "</Delete>\n");
	return s3xml_finish(&b, ok);
}
