// The CLI's management commands (everything that talks to a running orchestrator through the
// API client), registered in one place so main.ts needs one line for all of them.

import type { Command } from "commander";
import { registerApplianceCommands, registerChangesCommands, registerPolicyCommands, registerSgCommands } from "./inventory-commands.js";
import { registerConnsCommands, registerRecordCommands, registerStatusCommands, registerTokenCommands, registerVerifyCommand } from "./operations-commands.js";

export function registerManagement(program: Command): void {
  registerStatusCommands(program);
  registerApplianceCommands(program);
  registerSgCommands(program);
  registerChangesCommands(program);
  registerPolicyCommands(program);
  registerConnsCommands(program);
  registerVerifyCommand(program);
  registerTokenCommands(program);
  registerRecordCommands(program);
}
