"""From a request on the wire to a reply: lanes, the login cache, decisions recorded."""
