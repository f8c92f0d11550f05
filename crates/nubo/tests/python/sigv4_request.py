"""Sends one request to the nubo API signed by botocore, AWS's own SigV4 signer.

usage: sigv4_request.py ENDPOINT REGION KEY_ID SECRET METHOD PATH [JSON_BODY]
Prints {"status": N, "body": ...} on stdout.
"""
import json
import sys
import urllib.error
import urllib.request

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

endpoint, region, key_id, secret, method, path = sys.argv[1:7]
body = sys.argv[7].encode() if len(sys.argv) > 7 else None
headers = {"content-type": "application/json"} if body else {}
request = AWSRequest(method=method, url=endpoint + path, data=body, headers=headers)
SigV4Auth(Credentials(key_id, secret), "nubo", region).add_auth(request)
prepared = request.prepare()
http = urllib.request.Request(prepared.url, data=body, method=method, headers=dict(prepared.headers))
try:
    with urllib.request.urlopen(http) as response:
        status, text = response.status, response.read()
except urllib.error.HTTPError as error:
    status, text = error.code, error.read()
print(json.dumps({"status": status, "body": json.loads(text) if text else None}))
