-- wrk script: a 1 MiB POST to the echo route (wrk adds Content-Length).
-- Use: wrk -s bench/post.lua http://HOST:PORT/echo
wrk.method = "POST"
wrk.body = string.rep("x", 1024 * 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
