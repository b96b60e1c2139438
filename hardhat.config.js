// Hardhat 2 (CommonJS) configuration. It compiles with the pinned local solcjs from npm (no compiler
// download) and reads the same compiler settings as the Python build: contracts/compiler.json.
const path = require("path");
const { subtask } = require("hardhat/config");
const { TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD } = require("hardhat/builtin-tasks/task-names");
const compiler = require("./contracts/compiler.json");

subtask(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, async (args, hre, runSuper) => {
  if (args.solcVersion !== compiler.version) return runSuper();
  const solc = require("solc");
  return {
    compilerPath: path.join(path.dirname(require.resolve("solc")), "soljson.js"),
    isSolcJs: true,
    version: args.solcVersion,
    longVersion: solc.version().replace(".Emscripten.clang", ""),
  };
});

/** @type import('hardhat/config').HardhatUserConfig */
module.exports = {
  solidity: { version: compiler.version, settings: compiler.settings },
  paths: { sources: "./contracts", artifacts: "./build/hardhat/artifacts", cache: "./build/hardhat/cache" },
  networks: { hardhat: { hardfork: compiler.settings.evmVersion } },
};
