// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IPocMarketplace} from "../interfaces/IPocMarketplace.sol";

/// @title EtherRejecter
/// @notice Test-only trainer contract that refuses ether, to show a failed transfer keeps the credit
/// and that `claimTo` lets such an account still withdraw elsewhere.
contract EtherRejecter {
    IPocMarketplace public immutable market;

    constructor(IPocMarketplace market_) {
        market = market_;
    }

    /// @notice Registers this contract as a trainer.
    function register(uint256 projectId) external payable {
        market.register{value: msg.value}(projectId);
    }

    /// @notice Submits an update as this contract.
    function submit(uint256 projectId, uint32 round, string calldata cid, bytes32 commitment) external {
        market.submit(projectId, round, cid, commitment, bytes32(0));
    }

    /// @notice Claims to itself (fails: it rejects ether).
    function claimSelf() external {
        market.claim();
    }

    /// @notice Claims to another address.
    function claimTo(address payable to) external {
        market.claimTo(to);
    }

    receive() external payable {
        revert("no ether");
    }
}
