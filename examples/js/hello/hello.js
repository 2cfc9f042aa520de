// Spore's JavaScript command example: a `wasi:cli/command` component (componentize-js) that
// prints a greeting, its arguments and the `GREETING_NAME` environment variable.
//   hello fail   exits with an error (exit code 1: WASI 0.2's exit carries only failure)
//   hello throw  throws: the run export fails (exit code 1) and the error reaches stderr
import { getArguments, getEnvironment } from 'wasi:cli/environment@0.2.12';
import { exit } from 'wasi:cli/exit@0.2.12';

export const run = {
  run() {
    // componentize-js turns an uncaught error into run's error result without printing it:
    // print it, so that `kubectl logs` shows why the container failed.
    try {
      main();
    } catch (e) {
      console.error(`error: ${e.message}`);
      throw e;
    }
  },
};

function main() {
  const env = Object.fromEntries(getEnvironment());
  const args = getArguments().slice(1);
  const name = env.GREETING_NAME ?? 'world';
  console.log(`Hello, ${name}, from a JavaScript component on Spore!`);
  console.log(`args: ${JSON.stringify(args)}`);
  if (args[0] === 'fail') {
    console.error('failing on purpose, as asked');
    exit({ tag: 'err' });
  }
  if (args[0] === 'throw') {
    throw new Error('thrown on purpose, as asked');
  }
}
