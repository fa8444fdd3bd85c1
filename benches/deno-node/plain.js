self.postMessage(typeof Response);
