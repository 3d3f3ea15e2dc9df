-- wrk script: HTTP/1.1 pipelining, 16 requests sent in one write.
-- wrk counts every response it parses, so requests/s are requests, not
-- batches.  Use: wrk -s bench/pipeline.lua http://HOST:PORT/
local depth = 16

init = function(args)
   local reqs = {}
   for i = 1, depth do
      reqs[i] = wrk.format(nil, wrk.path)
   end
   batch = table.concat(reqs)
end

request = function()
   return batch
end
