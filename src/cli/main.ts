#!/usr/bin/env node
// The `tandem` command. Each subcommand lives in its own module; this file only wires them
// to commander and turns TandemErrors into a message and an exit status.

import { Command, CommanderError } from "commander";
import { TandemError, exitCodeOf } from "../stdx/errors.js";
import { registerManagement } from "./management.js";
import { registerMember } from "./member.js";
import { registerOrchestrator } from "./orchestrator.js";
import { registerReplay } from "./replay.js";
import { registerSim } from "./sim.js";
import { registerLab } from "./lab.js";
import { registerUp } from "./up.js";
import { softwareVersion } from "../version.js";
import { registerSizing } from "./sizing.js";

const program = new Command();
program
  .name("tandem")
  .description("Tandem: an open, software hyperscale gateway cluster")
  .version(softwareVersion())
  // `tandem --version` is the program's; after a command name options are the command's own
  // (`tandem sg upgrade GROUP --version V` names the version to upgrade to).
  .enablePositionalOptions()
  .exitOverride()
  .showHelpAfterError();

registerReplay(program);
registerOrchestrator(program);
registerMember(program);
registerManagement(program);
registerSim(program);
registerLab(program);
registerUp(program);
registerSizing(program);

async function main(): Promise<void> {
  try {
    await program.parseAsync(process.argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      process.exitCode = error.exitCode === 0 ? 0 : 2;
      return;
    }
    if (error instanceof TandemError) {
      process.stderr.write(`tandem: ${error.message} (${error.code})\n`);
      process.exitCode = exitCodeOf(error.code);
      return;
    }
    throw error;
  }
}

await main();
