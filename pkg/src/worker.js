// The worker entry that src/index.js starts: one model per worker.
import { serve } from "./host.js";

const receive = serve((msg) => self.postMessage(msg));
self.onmessage = (e) => receive(e.data);
