// Node's answers to cases.mjs, the expectation the suite holds the function to.
import { runAll } from "./cases.mjs";
process.stdout.write(JSON.stringify(await runAll()));
