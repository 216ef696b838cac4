# sync_common.sh - helpers shared by the sync_*.sh integration tests (sourced after harness.sh
# and mount_common.sh; not a test itself). Everything here reads the bucket with curl, never
# through objfs.
#
#   sync_fetch BUCKET PREFIX OUT   download every object under PREFIX ("" or "a/b/") into
#       OUT/<key without PREFIX> (one curl process, connections reused) and write OUT.meta,
#       one line per object: "KEY HTTP_CODE MODE UID GID MTIME ETAG". Directory markers
#       ("dir/") are listed in OUT.meta only. Prints nothing; fails the test on a listing error.
#   sync_keys BUCKET PREFIX        print every key under PREFIX, one per line, sorted.
#   sync_md5_list DIR              print "MD5  RELATIVE-PATH" for every file below DIR, sorted.
#   sync_uploads BUCKET            print the multipart uploads in progress ("KEY UPLOAD-ID").
#   sync_status_get KEY            print KEY's value from `objfs status` of the last mount.

sync_keys() {
	local bucket=$1 prefix=$2 token="" out q
	out=$HARNESS_DIR/list.xml
	while :; do
		q="list-type=2&max-keys=1000&prefix=$prefix"
		[[ -z $token ]] || q+="&continuation-token=$(python3 -c \
			'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$token")"
		s3curl -f -o "$out" "$S3_ENDPOINT/$bucket?$q" || fail "cannot list s3://$bucket/$prefix"
		python3 - "$out" <<'EOF'
import sys, xml.etree.ElementTree as ET
ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
root = ET.parse(sys.argv[1]).getroot()
for c in root.iter(ns + "Contents"):
    print(c.find(ns + "Key").text)
EOF
		token=$(python3 - "$out" <<'EOF'
import sys, xml.etree.ElementTree as ET
ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
root = ET.parse(sys.argv[1]).getroot()
t = root.find(ns + "IsTruncated")
n = root.find(ns + "NextContinuationToken")
print(n.text if t is not None and t.text == "true" and n is not None else "")
EOF
		)
		[[ -n $token ]] || break
	done | LC_ALL=C sort
}

sync_fetch() {
	local bucket=$1 prefix=$2 out=$3 cfg key rel
	cfg=$HARNESS_DIR/fetch.curl
	mkdir -p "$out"
	: >"$cfg"
	: >"$out.meta"
	while IFS= read -r key; do
		rel=${key#"$prefix"}
		printf 'url = "%s/%s/%s"\n' "$S3_ENDPOINT" "$bucket" "$key" >>"$cfg"
		if [[ $key == */ ]]; then
			printf 'output = "/dev/null"\n' >>"$cfg"
		else
			printf 'output = "%s/%s"\n' "$out" "$rel" >>"$cfg"
		fi
	done < <(sync_keys "$bucket" "$prefix")
	[[ -s $cfg ]] || return 0
	# -w runs per transfer; the key is the URL's path after the bucket
	curl -sS --create-dirs --aws-sigv4 "aws:amz:${S3_REGION:-us-east-1}:s3" \
		--user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
		-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -K "$cfg" \
		-w '%{url} %{http_code} %header{x-amz-meta-mode} %header{x-amz-meta-uid} %header{x-amz-meta-gid} %header{x-amz-meta-mtime} %header{etag}\n' |
		sed -E "s#^$S3_ENDPOINT/$bucket/##; s/\"//g" >"$out.meta" ||
		fail "curl could not fetch s3://$bucket/$prefix"
}

sync_md5_list() {
	(cd "$1" && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -r -d '\n' md5sum)
}

sync_uploads() {
	local out=$HARNESS_DIR/uploads.xml
	s3curl -f -o "$out" "$S3_ENDPOINT/$1?uploads" || fail "cannot list the multipart uploads of $1"
	python3 - "$out" <<'EOF'
import sys, xml.etree.ElementTree as ET
ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
root = ET.parse(sys.argv[1]).getroot()
for u in root.iter(ns + "Upload"):
    print(u.find(ns + "Key").text, u.find(ns + "UploadId").text)
EOF
}

sync_status_get() {
	objfs_ctl status | sed -n "s/^$1=//p"
}
